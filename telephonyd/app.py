"""`App`: the only module that imports every edge and wires them together.

Lifecycle, top to bottom:
1. start: the store (retried with backoff while the database is down; a permanent store error,
   such as a damaged or emptied SQLite file or an unwritable state directory, exits 78), the outbox
   and its senders, the HTTP listener with every edge's routes, the FastAGI listener, the AMI side
   when enabled;
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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import sqlalchemy as sa

from . import __version__
from .backoff import equal_jitter
from .config import Config, load_config
from .errors import ConfigError, StoreError
from .descriptors import AcceptErrorReporter, DescriptorBudget, budget_for
from .reload import Reloader, apply_reload
from .metrics import EventCounter, MetricsExporter, MetricSources, UpstreamStats
from .sdnotify import Notifier
from .store import Store
from .web import HTTPServer

if TYPE_CHECKING:
    from .wiring import AMISide

log = logging.getLogger(__name__)


#: The order components stop in (listeners first so nothing new arrives, the outbox last so what
#: they recorded is flushed); a component not named here stops after these, in start order.
STOP_ORDER = ("fastagi", "http", "ameyo", "vicidial", "ami", "contacts", "presence", "calls", "calls_sink", "mqtt",
              "outbox")


class Component(Protocol):
    async def start(self) -> None: ...
    async def run(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...
    def health(self) -> dict[str, Any]: ...


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
        self.stores: list[Store] = [self.store]
        self.components: dict[str, Any] = {}
        #: What applies the live fields of a reloaded config (SIGHUP), registered as parts are built.
        self.reloaders: list[Reloader] = []
        self._stopping = asyncio.Event()
        self._reload = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self.http: HTTPServer | None = None
        self.fastagi: Any = None
        self.did_select: Any = None
        self.outbox: Any = None
        # Metrics: send attempts of every outbox sender, measured where the senders are registered.
        self.upstream_stats = UpstreamStats()
        self.metrics: MetricsExporter | None = None
        self.accept_errors = AcceptErrorReporter()
        self.descriptors: DescriptorBudget | None = None
        # The parts other parts or the metrics read, set only by the builders below.
        self.did_sender: Any = None
        self.calllog_handler: Any = None
        self.ameyo_service: Any = None
        self.tops_sender: Any = None
        self.ami_side: AMISide | None = None
        self.loop_lag: Any = None  # telephonyd.metrics.looplag.LoopLagMonitor, set in run()

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
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None),
            connector=aiohttp.TCPConnector(limit=max(8, self.config.outbox.concurrency * 2)),
        )
        self._build_outbox()
        self._build_http()
        self._build_fastagi()
        self._build_ameyo()
        self._build_vicidial()
        await self._build_ami()
        if self.config.http.console:  # operator's view: the web console at GET / (telephonyd.console)
            from .console.routes import mount as mount_console

            mount_console(self)
        from .metrics.looplag import LoopLagMonitor  # operator's view: event-loop lag for /metrics

        self.loop_lag = self.components["loop_lag"] = LoopLagMonitor()
        self._build_metrics()
        async with contextlib.AsyncExitStack() as started:
            for name, component in self.components.items():
                self.notifier.status(f"starting {name}")
                await component.start()
                started.push_async_callback(self._stop_one, name, component)
            # All started: from now on they stop in STOP_ORDER. A start that raised above has
            # stopped, in reverse, those that had started.
            started.pop_all()
        return True

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP client session the upstream senders share (open from the start on)."""
        assert self._session is not None
        return self._session

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

    def _build_outbox(self) -> None:
        from .outbox import Outbox
        from .upstream.did_optimizer import DID_OPTIMIZER_TARGET, DIDOptimizerSender

        outbox = Outbox(self.store, node_id=self.config.node_id, config=self.config.outbox)
        assert self._session is not None
        self.did_sender = DIDOptimizerSender(self.config.did_optimizer, self._session)
        self.outbox = outbox
        self.register_sender(DID_OPTIMIZER_TARGET, self.did_sender, enabled=self.config.did_optimizer.enabled)
        sending = [self.config.did_optimizer.enabled]

        def did_optimizer_enabled(new: Config) -> None:  # ``did_optimizer.enabled`` is live
            if new.did_optimizer.enabled != sending[0]:
                sending[0] = new.did_optimizer.enabled
                self.register_sender(DID_OPTIMIZER_TARGET, self.did_sender, enabled=sending[0])

        self.reloaders += [self.did_sender.reconfigure, did_optimizer_enabled]
        self.components["outbox"] = outbox

    def _build_http(self) -> None:
        self.descriptors = budget_for(self.config, upstream_connections=max(8, self.config.outbox.concurrency * 2))
        self.http = HTTPServer(self.config.http, status=self.status, ready=self.ready,
                               max_connections=self.descriptors.http_connections)
        self.components["http"] = self.http

    def _build_fastagi(self) -> None:
        from .calllog import CallLogHandler
        from .didselect import DIDSelectService
        from .fastagi import FastAGIServer
        from .upstream.did_optimizer import DID_OPTIMIZER_TARGET

        self.did_select = DIDSelectService(
            self.config.did_select, self.config.did_optimizer, self.store, node_id=self.config.node_id
        )
        self.calllog_handler = CallLogHandler(
            self.config.call_log, self.outbox.enqueue, target=DID_OPTIMIZER_TARGET,
            selections=self.did_select.selection_for,
        )  # fmt: skip
        routes = {"call_log": self.calllog_handler, "did_select": self.did_select.handler}
        self.fastagi = FastAGIServer(self.config.fastagi, routes,
                                     max_sessions=self.descriptors.fastagi_sessions if self.descriptors else None)
        self.components["fastagi"] = self.fastagi
        self.components["did_select"] = self.did_select
        self.reloaders += [self.did_select.reconfigure, self.calllog_handler.reconfigure]

    def _build_ameyo(self) -> None:
        if not self.config.ameyo.enabled:
            return
        from .ameyo import AmeyoService
        from .ameyo.routes import admin_routes, callback_routes
        from .upstream.tops import TopsSender

        assert self._session is not None and self.http is not None
        service = AmeyoService(self.config.ameyo, self.config.tops, self.store, self.outbox, node_id=self.config.node_id)
        self.tops_sender = TopsSender(self.config.tops, self._session, on_result=service.record_upstream)
        self.register_sender("tops", self.tops_sender, enabled=True)
        self.http.add_routes(callback_routes(service), auth="none")  # access control is the routes' own
        self.http.add_routes(admin_routes(service), auth="admin")
        self.ameyo_service = service
        self.components["ameyo"] = service
        self.reloaders += [self.tops_sender.reconfigure, service.reconfigure]

    def _build_vicidial(self) -> None:
        if not self.config.vicidial.enabled:
            return
        from .upstream.did_optimizer import DID_OPTIMIZER_TARGET
        from .vicidial import VICIdialSource

        self.components["vicidial"] = VICIdialSource(
            self.config.vicidial, self.store, self.outbox, target=DID_OPTIMIZER_TARGET, node_id=self.config.node_id,
        )

    async def _build_ami(self) -> None:
        if not self.config.ami.enabled:
            if self.config.calls.enabled:
                log.warning("calls.enabled needs ami.enabled: no call is tracked")
            return
        from .wiring import build_ami_side

        self.ami_side = await build_ami_side(self)

    # -- metrics ---------------------------------------------------------------------------------

    def register_sender(self, target: str, sender: Any, *, enabled: bool) -> None:
        """Register an outbox sender, measured for ``telephonyd_upstream_*`` (also used on reload)."""
        self.outbox.register_sender(target, self.upstream_stats.wrap(target, sender), enabled=enabled)

    def _build_metrics(self) -> None:
        """``GET /metrics`` (admin token), read from the components at scrape time."""
        ami_events = None
        side = self.ami_side
        if side is not None:
            ami_events = EventCounter()
            side.client.subscribe("*", ami_events.observe)
        contacts = side.contacts if side is not None else None
        presence = side.presence if side is not None else None
        assert self.http is not None
        sources = MetricSources(
            node_id=self.config.node_id,
            version=__version__,
            started_at=self.started_at,
            components=lambda: self.components,
            fastagi_counters=self.fastagi.counters if self.fastagi is not None else None,
            upstream=self.upstream_stats,
            ami_events=ami_events,
            contacts=(lambda: list(contacts.table.values())) if contacts is not None else None,
            agents=presence.agents if presence is not None else None,
            outbox_stats=self.outbox.stats if self.outbox is not None else None,
            http_requests=lambda: self.http.request_counts if self.http is not None else {},
        )
        instruments = [*self.accept_errors.collectors(), *self.http.collectors()]
        if self.loop_lag is not None:  # operator's view (telephonyd.metrics.looplag)
            instruments += self.loop_lag.collectors()
        if self.fastagi is not None:
            instruments += self.fastagi.collectors()
        if self.ameyo_service is not None:
            instruments += self.ameyo_service.collectors()
        instruments.append(self.did_select.metrics)
        vicidial = self.components.get("vicidial")
        if vicidial is not None:
            instruments += vicidial.instruments()
        self.metrics = MetricsExporter(sources, instruments=instruments)
        self.http.add_routes(self.metrics.routes(), auth="admin")

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
        apply_reload(self, new)
        self.notifier.ready(self._status_line())
        return True

    # -- shutdown --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
        for hook in self._shutdown_hooks:
            with contextlib.suppress(Exception):
                await hook()
        if self._session is not None:
            await self._session.close()
            self._session = None
        for store in self.stores:
            await store.close()

    # -- status ----------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """Every listener bound, the store answering and accepting writes (not full, not read-only)."""
        listeners = [c for c in (self.http, self.fastagi) if c is not None]
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
        if self.fastagi is not None:
            parts.append(f"fastagi {', '.join(self.fastagi.health().get('addresses', []) or [])}")
        if self.http is not None:
            parts.append(f"http {', '.join(self.http.health().get('addresses', []))}")
        return "; ".join(parts)
