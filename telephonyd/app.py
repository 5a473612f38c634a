"""`App`: runs the daemon from the features `telephonyd.wiring` builds (see `telephonyd.feature`).

Lifecycle, top to bottom:
1. start: the store (retried with backoff while the database is down; a permanent store error,
   such as a damaged or emptied SQLite file or an unwritable state directory, exits 78); then every
   edge is built as a `Feature` (`telephonyd.wiring`: the outbox and its senders, the HTTP
   listener, FastAGI, Ameyo, VICIdial, the AMI side, the console), their routes mounted, their
   reloaders and metrics registered, and their components started in order;
2. READY (sd_notify) once every listener accepts; every component's ``run()`` in one TaskGroup;
3. SIGTERM/SIGINT set a flag; shutdown stops accepting, drains AGI sessions in flight within
   ``fastagi.drain_timeout_s``, stops the AMI side, flushes and stops the outbox, closes the store;
   exit 0. A component that crashes (or returns while not stopping) ends the process with exit 1 so
   systemd restarts it; a peer outage only degrades health.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from typing import Any

import aiohttp
import sqlalchemy as sa

from . import __version__, wiring
from .backoff import equal_jitter
from .config import Config, load_config
from .descriptors import AcceptErrorReporter, DescriptorBudget, budget_for
from .errors import ConfigError, StoreError
from .feature import Component, Feature, Listener
from .metrics import MetricsExporter, MetricSources
from .outbox import Outbox
from .reload import Reloader, reload_config
from .sdnotify import Notifier
from .store import Store
from .web import HTTPServer

log = logging.getLogger(__name__)


#: The order components stop in (listeners first so nothing new arrives, the outbox last so what
#: they recorded is flushed); a component not named here stops after these, in start order.
STOP_ORDER = ("fastagi", "http", "ameyo", "vicidial", "ami", "contacts", "presence", "calls", "calls_sink", "mqtt",
              "outbox")


class ComponentExited(RuntimeError):
    """A component's run() returned while the app was not stopping."""


def store_schemas(config: Config) -> list[sa.MetaData]:
    """Every MetaData that lives in the main store (``store.url``)."""
    from .ameyo.schema import metadata as ameyo_metadata
    from .calls.records import metadata as calls_metadata
    from .didselect.schema import metadata as didselect_metadata
    from .outbox.schema import metadata as outbox_metadata

    schemas = [outbox_metadata, ameyo_metadata, calls_metadata, didselect_metadata]
    if config.vicidial.enabled:
        from .vicidial import metadata as vicidial_metadata

        schemas.append(vicidial_metadata)
    if config.ami.enabled and config.ps_contacts.url is None:  # the contacts feature needs the table
        from .contacts.schema import metadata_for

        schemas.append(metadata_for(config.ps_contacts.mode))
    return schemas


def build_store(config: Config, *, create: bool = True, check: bool = False) -> Store:
    """The main store (see `Store`: ``create`` a missing one, ``check`` it with quick_check)."""
    return Store(
        config.store.url.get_secret_value(),
        schemas=store_schemas(config),
        pool_size=config.store.pool_size,
        connect_timeout_s=config.store.connect_timeout_s,
        create=create,
        check=check,
        write_probe=True,
        urls=config.store.all_urls(),
        durability=config.store.durability,
    )


class App:
    """Build and run the daemon from a validated `Config`. ``run()`` returns the exit code."""

    def __init__(self, config: Config, *, config_path: str | None = None, notifier: Notifier | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.started_at = time.time()
        self.store = build_store(config, check=True)
        #: What each edge brings, in start order (built in `_start`).
        self.features: list[Feature] = []
        self._stopping = asyncio.Event()
        self._reload = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.http: HTTPServer | None = None
        self.outbox: Outbox | None = None
        self.metrics: MetricsExporter | None = None
        self.accept_errors = AcceptErrorReporter()
        self.descriptors: DescriptorBudget | None = None

    @property
    def components(self) -> dict[str, Component]:
        """Every feature's components by ``/status`` name, in start order."""
        return {name: c for feature in self.features for name, c in feature.components.items()}

    @property
    def reloaders(self) -> list[Reloader]:
        """What applies the live fields of a reloaded config (SIGHUP), in feature order."""
        return [r for feature in self.features for r in feature.reloaders]

    @property
    def listeners(self) -> list[Listener]:
        return [listener for feature in self.features for listener in feature.listeners]

    # -- public ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        self.accept_errors.install(loop)
        try:
            try:
                started = await self._start()
            except ConfigError as exc:
                log.error("configuration error", extra={"error": str(exc)})
                return ConfigError.exit_code
            except StoreError as exc:
                if exc.retryable:  # a component's start met a store outage: systemd restarts us
                    log.error("cannot start", extra={"error": str(exc)})
                    return 1
                # Permanent (damaged file, unwritable directory, refused login): `_start_store`
                # retries only the others. 78: systemd does not restart into the same failure.
                log.error("the store cannot be used; exiting", extra={"error": str(exc)})
                self.notifier.status(f"store unusable: {exc}")
                return exc.exit_code
            except OSError as exc:
                log.error("cannot start", extra={"error": str(exc)})
                return 1
            if not started:  # stop requested while waiting for the store
                return 0
            # Everything built at start lives as long as the process: keep it out of the cyclic
            # collector's full passes, which otherwise pause the event loop for tens of ms.
            gc.collect()
            gc.freeze()
            self.notifier.ready(self._status_line())
            log.info("READY", extra={"node_id": self.config.node_id, "version": __version__})
            return await self._main_loop()
        finally:
            await self._shutdown()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            loop.set_exception_handler(None)
            self.notifier.close()

    # -- startup ---------------------------------------------------------------------------------

    async def _start(self) -> bool:
        self.notifier.status("opening the store")
        if not await self.start_store(self.store):
            return False
        await self._build_features()
        self._mount()
        async with contextlib.AsyncExitStack() as started:
            for name, component in self.components.items():
                self.notifier.status(f"starting {name}")
                await component.start()
                started.push_async_callback(self._stop_one, name, component)
            # All started: from now on they stop in STOP_ORDER. A start that raised above has
            # stopped, in reverse, those that had started.
            started.pop_all()
        return True

    async def _build_features(self) -> None:
        """Every edge as a `Feature` into ``features``, in start order (see `telephonyd.wiring`)."""
        config = self.config
        upstream_connections = max(8, config.outbox.concurrency * 2)
        session = self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), connector=aiohttp.TCPConnector(limit=upstream_connections))
        outbox = self.outbox = Outbox(self.store, node_id=config.node_id, config=config.outbox)
        senders = wiring.Senders(outbox)
        self.descriptors = budget_for(config, upstream_connections=upstream_connections)
        http = self.http = HTTPServer(config.http, status=self.status, ready=self.ready,
                                      max_connections=self.descriptors.http_connections)
        # Kept on the app as they are built, so a builder failing half-way still leaves the
        # shutdown hooks of those built (a started ps_contacts store) to `_shutdown`.
        features = self.features = [
            wiring.outbox_feature(config, senders, session),
            wiring.http_feature(http),
            wiring.fastagi_feature(config, self.store, outbox, max_sessions=self.descriptors.fastagi_sessions),
        ]
        if config.ameyo.enabled:
            features.append(wiring.ameyo_feature(config, self.store, senders, session))
        if config.vicidial.enabled:
            features.append(wiring.vicidial_feature(config, self.store, outbox))
        ami: list[Feature] = []
        if config.ami.enabled:
            ami = await wiring.ami_features(config, self.store, senders, session, http.authorized, self.start_store)
        elif config.calls.enabled:
            log.warning("calls.enabled needs ami.enabled: no call is tracked")
        features += ami
        if config.http.console:  # operator's view: the web console at GET / (telephonyd.console)
            features.append(wiring.console_feature(config, http, self.status, outbox, self.store, agents=bool(ami),
                                                   calls=bool(ami) and config.calls.enabled))
        from .metrics.looplag import LoopLagMonitor  # operator's view: event-loop lag for /metrics

        loop_lag = LoopLagMonitor()
        features.append(Feature("loop_lag", components={"loop_lag": loop_lag}, metrics=tuple(loop_lag.collectors())))

    def _mount(self) -> None:
        """Mount every feature's routes and HTTP shutdown hooks, and ``GET /metrics`` (admin
        token) over every feature's metrics."""
        http = self.http
        assert http is not None
        for feature in self.features:
            http.add_routes(feature.public_routes, auth="none")  # access control is the routes' own
            http.add_routes(feature.admin_routes, auth="admin")
            for hook in feature.http_shutdown:
                http.on_shutdown(hook)
        sources = MetricSources(node_id=self.config.node_id, version=__version__, started_at=self.started_at,
                                components=lambda: self.components)
        collectors = [*self.accept_errors.collectors(), *(m for feature in self.features for m in feature.metrics)]
        self.metrics = MetricsExporter(sources, collectors)
        http.add_routes(self.metrics.routes(), auth="admin")

    async def start_store(self, store: Store) -> bool:
        """Start ``store``, retrying with backoff while its error is retryable (a database server
        down); a permanent `StoreError` (damaged file, unwritable directory) is raised."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                await store.start()
                return True
            except StoreError as exc:
                if not exc.retryable:
                    raise
                attempt += 1
                delay = equal_jitter(attempt, 1.0, 30.0)
                log.warning("store unavailable, retrying", extra={"error": str(exc), "retry_in_s": round(delay, 1)})
                self.notifier.status(f"waiting for the store: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        return False

    # -- running ---------------------------------------------------------------------------------

    async def _main_loop(self) -> int:
        failures: list[BaseException] = []
        try:
            async with asyncio.TaskGroup() as tg:
                for name, component in self.components.items():
                    tg.create_task(self._supervise(name, component), name=f"run:{name}")
                tg.create_task(self._watchdog(), name="watchdog")
                tg.create_task(self._reloader(), name="reloader")
                await self._stopping.wait()
                self.notifier.stopping()
                log.info("stopping")
                await self._stop_components()
        except* Exception as group:
            failures.extend(group.exceptions)
        if failures:
            for exc in failures:
                log.error("component failed, exiting", exc_info=exc)
            self._stopping.set()
            await self._stop_components()
            return 1
        return 0

    async def _supervise(self, name: str, component: Component) -> None:
        await component.run()
        if not self._stopping.is_set():
            raise ComponentExited(f"{name} stopped on its own")

    async def _stop_components(self) -> None:
        names = [n for n in STOP_ORDER if n in self.components] + [n for n in self.components if n not in STOP_ORDER]
        for name in names:
            await self._stop_one(name, self.components[name])

    async def _stop_one(self, name: str, component: Component) -> None:
        self.notifier.status(f"stopping {name}")
        try:
            await component.stop(self.config.fastagi.drain_timeout_s if name == "fastagi" else 5.0)
        except Exception:
            log.exception("error while stopping", extra={"component": name})

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s
        if interval is None:
            await self._stopping.wait()
            return
        while not self._stopping.is_set():
            started = time.monotonic()
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
            lag = time.monotonic() - started - interval
            if lag > interval:
                log.warning("event loop lagging", extra={"lag_s": round(lag, 3)})

    async def _reloader(self) -> None:
        while not self._stopping.is_set():
            waiter = asyncio.ensure_future(self._reload.wait())
            stopper = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if self._reload.is_set() and not self._stopping.is_set():
                self._reload.clear()
                self.reload()

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP) and apply what can change without a restart."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration", extra={"error": str(exc)})
            self.notifier.ready(self._status_line())
            return False
        self.config = reload_config(self.config, new, http=self.http, reloaders=self.reloaders).config
        self.notifier.ready(self._status_line())
        return True

    # -- shutdown --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
        for feature in self.features:
            for hook in feature.shutdown_hooks:
                try:
                    await hook()
                except Exception:
                    log.exception("error in a shutdown hook", extra={"feature": feature.name})
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.store.close()

    # -- status ----------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """Every listener bound, the store answering and accepting writes (not full, not read-only)."""
        listeners = self.listeners
        if not all(c.health().get("ok") for c in listeners):
            return False
        return await self.store.ping() and await self.store.accepts_writes()

    async def status(self) -> dict[str, Any]:
        components = {}
        for name, component in self.components.items():
            try:
                components[name] = component.health()
            except Exception as exc:  # noqa: BLE001 - a status page must not fail on one component
                components[name] = {"ok": False, "state": "error", "error": str(exc)}
        store_ok = await self.store.ping()
        writable = await self.store.accepts_writes()
        components["store"] = {"ok": store_ok and writable,
                               "state": ("refusing writes" if not writable else "reachable") if store_ok
                               else "unreachable",
                               "dialect": self.store.dialect, **self.store.write_state.describe(),
                               **self.store.describe()}
        outbox: dict[str, Any] = {}
        if self.outbox is not None and store_ok:
            try:
                outbox = await self.outbox.stats()
            except StoreError as exc:
                outbox = {"error": str(exc)}
        return {
            "node_id": self.config.node_id,
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "ok": all(h.get("ok") for h in components.values()),
            "components": components,
            "outbox": outbox,
            "last_upstream_error": (components.get("outbox") or {}).get("last_error"),
        }

    def _status_line(self) -> str:
        parts = [f"node {self.config.node_id}"]
        for feature in self.features:
            for listener in feature.listeners:
                parts.append(f"{feature.name} {', '.join(f'{h}:{p}' for h, p in listener.bound_addresses)}")
        return "; ".join(parts)
