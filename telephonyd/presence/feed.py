"""Wiring of the dashboard contract: native presence events and contact changes, translated once
(`dashboard.DashboardTranslator`), fanned out to the plain WebSocket in the dashboard shape and to
the Socket.IO hub. `mount_dashboard` builds it for one HTTP server; it never touches the native
stream, MQTT or the API's native payloads."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config import PresenceConfig
from ..contacts.model import ContactChange
from . import dashboard
from .stream import AgentStream

log = logging.getLogger(__name__)


@dataclass
class DashboardFeed:
    """A presence listener (`publish_event`) and contacts batch subscriber (`publish_contacts`)."""

    translator: dashboard.DashboardTranslator
    stream: AgentStream
    hub: Any = None  # SocketIOHub, when mounted

    def publish_event(self, event: Any) -> None:
        for name, data in self.translator.presence(event):
            self._send(name, data)

    def publish_contacts(self, changes: list[ContactChange]) -> None:
        if not self.stream.clients and not (self.hub is not None and self.hub.clients):
            return  # nobody listens: a 50,000-contact resync costs nothing here
        for name, data in self.translator.contacts(changes):
            self._send(name, data)

    def routes(self) -> list[web.RouteDef]:
        """``/socket.io/`` when the hub is on (mount with ``auth='none'``: it checks the token)."""
        return list(self.hub.routes()) if self.hub is not None else []

    def closers(self) -> list[Callable[[], Awaitable[None]]]:
        """What to close when the HTTP listener shuts down (the stream, the hub)."""
        return [self.stream.close, *([self.hub.close] if self.hub is not None else [])]

    def _send(self, name: str, data: dict[str, Any]) -> None:
        self.stream.publish_message({"type": name, **data})
        if self.hub is not None:
            self.hub.publish(name, data)


def dashboard_feed(config: PresenceConfig, presence: Any, contacts: Any,
                   authorized: Callable[[web.Request], bool]) -> DashboardFeed:
    """Build the feed and subscribe it to ``presence`` and ``contacts``, with its Socket.IO hub
    (when ``presence.socketio`` and python-socketio is installed; ``authorized`` checks the admin
    token on its connect). Mount ``feed.routes()`` with ``auth='none'`` and run ``feed.closers()``
    when the HTTP listener shuts down; pass ``feed.stream`` to `presence.routes` as the
    dashboard-shaped ``/ws/agents``."""
    translator = dashboard.DashboardTranslator()

    def snapshot() -> dict[str, Any]:
        return dashboard.snapshot(presence.agents(), translator.now())

    stream = AgentStream.for_config(config, presence.agents, snapshot=lambda: {"type": "agents:snapshot", **snapshot()})
    hub = None
    if config.socketio:
        try:
            from .socketio_hub import SocketIOHub

            hub = SocketIOHub(snapshot, authorized, cors_origins=config.socketio_cors_origins)
        except ImportError:
            log.warning("presence.socketio is on but python-socketio is not installed; /socket.io/ not served")
    feed = DashboardFeed(translator, stream, hub)
    presence.add_listener(feed.publish_event)
    contacts.subscribe_batch(feed.publish_contacts)
    return feed


def mount_dashboard(config: PresenceConfig, presence: Any, contacts: Any, http: Any) -> DashboardFeed:
    """`dashboard_feed` mounted on ``http`` (an `HTTPServer`): its routes and its shutdown."""
    feed = dashboard_feed(config, presence, contacts, http.authorized)
    for close in feed.closers():
        http.on_shutdown(close)
    http.add_routes(feed.routes(), auth="none")  # the admin token is checked on the Socket.IO connect
    return feed
