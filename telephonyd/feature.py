"""`Feature`: what one edge brings to the daemon, as one typed value.

Every builder in `telephonyd.wiring` is a function of typed dependencies (the config, the store,
the outbox, the HTTP client session, ...) returning a `Feature`; `telephonyd.app.App` keeps the
list, mounts the routes, registers the reloaders and shutdown hooks, hands the metrics to the
exporter, and enters the components through its ``AsyncExitStack`` (stopping them in
``STOP_ORDER``). Nothing is set on the app from outside and nothing is looked up by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.registry import Collector

from .reload import Reloader


class Component(Protocol):
    """A long-running part: ``start()`` binds or connects, ``run()`` is its loop (returns after
    ``stop``), ``stop(timeout_s)`` drains within the timeout, ``health()`` is its ``/status``
    entry (``ok`` and ``state`` at least)."""

    async def start(self) -> None: ...
    async def run(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...
    def health(self) -> dict[str, Any]: ...


class Listener(Protocol):
    """A component that accepts connections: ready when its ``health()`` says ``ok``; its bound
    ``(host, port)`` pairs go into the systemd status line."""

    bound_addresses: list[tuple[str, int]]

    def health(self) -> dict[str, Any]: ...


#: An awaitable without arguments run at shutdown (close a stream, a second store).
Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Feature:
    """One edge's contribution.

    - ``name``: for logs and docs only (nothing looks a feature up by it).
    - ``components``: ``/status`` name -> `Component`, in start order (consumers before the
      producer they subscribe to).
    - ``listeners``: the components that accept connections (``/readyz`` waits for them).
    - ``public_routes`` / ``admin_routes``: mounted on the HTTP listener with ``auth="none"``
      (the routes check access themselves) / ``auth="admin"``.
    - ``reloaders``: each applies the live fields of a reloaded `Config` (see `telephonyd.reload`).
    - ``http_shutdown``: run when the HTTP listener shuts down (close WebSocket streams).
    - ``shutdown_hooks``: run at the end of the process, after every component stopped.
    - ``metrics``: the prometheus collectors the components own (`telephonyd.metrics.Section`
      objects reading typed state, or instruments made with ``registry=None``).
    """

    name: str
    components: Mapping[str, Component] = field(default_factory=dict)
    listeners: tuple[Listener, ...] = ()
    public_routes: tuple[web.RouteDef, ...] = ()
    admin_routes: tuple[web.RouteDef, ...] = ()
    reloaders: tuple[Reloader, ...] = ()
    http_shutdown: tuple[Hook, ...] = ()
    shutdown_hooks: tuple[Hook, ...] = ()
    metrics: tuple[Collector, ...] = ()
