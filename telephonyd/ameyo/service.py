"""`AmeyoService`: Ameyo dialer callbacks recorded durably, then relayed to TopS.II by the outbox.

A callback is validated and routed at once (pure, `routing`); then the gate claim, phone-1 state
changes, request log row and outbox row are committed in one transaction (group-committed with
other callbacks, `batch`), and only then is Ameyo answered
``{"success":true,"message":"Data Received","request_id":"..."}``. The TopS.II request leaves later
from the outbox, so a crash after the answer loses nothing. A duplicate answers success too (Ameyo
must not retry) and is logged as a skip. A callback that cannot be routed answers 400 naming the
field, is kept in the request log and leaves no gate or state behind. When the store cannot record
the callback in ``record_timeout_s``, the answer is 503 and Ameyo retries.

Background work in `run`: the group-commit writer, the phone-1 expiry sweeper (every
``sweep_interval_s``) and pruning of the request log (``request_log_retention_s``) and of old gates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prometheus_client import Gauge

from ..backoff import equal_jitter
from ..config import AmeyoConfig, Config, TopsConfig
from ..errors import StoreError, raise_if_cancelling
from ..logs import LogThrottle, log_context
from ..store import STORE_ERRORS, Store
from . import requestlog
from .batch import GroupCommitter, Transaction
from .gate import GateTTLs
from .metrics import PHONE1_EXPIRED, AmeyoSection
from .recorder import CallbackRecorder, OutboxLike, Pending, Settings
from .routing import CallbackRejected, Route, RoutingRules, route_call_end, route_call_start
from .status import UNMAPPED_STATUS

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 600.0
#: A store transaction of the callback writer taking longer is abandoned (its callbacks answer 503).
WRITE_TIMEOUT_S = 30.0
ACK = {"success": True, "message": "Data Received"}
#: TopS.II results are noted in the request log together: the first waits this long (s) for others.
RESULT_LINGER_S = 0.02


def _settings(config: AmeyoConfig, tops: TopsConfig) -> Settings:
    return Settings(
        ttls=GateTTLs(config.processing_ttl_s, config.dedupe_ttl_s, config.phone1_state_ttl_s),
        phone1_ttl_s=config.phone1_state_ttl_s,
        send_phone1_on_expiry=config.send_phone1_on_expiry,
        dry_run=not tops.real_send,
    )


def _rules(config: AmeyoConfig) -> RoutingRules:
    return RoutingRules(zone=ZoneInfo(config.timezone),
                        phone1_final=frozenset(s.upper() for s in config.phone1_final_dispositions))


class AmeyoService:
    """The callback edge. Constructor arguments:

    - ``config``: the ``ameyo`` section (token, networks, TTLs in seconds, time zone, batch size);
    - ``tops``: the ``tops`` section (only ``real_send`` is read: requests recorded while it is false
      are marked ``dry_run`` in the request log);
    - ``store``: a started `Store` whose schemas include ``telephonyd.ameyo.schema.metadata``;
    - ``outbox``: an object with ``add(conn, target, key, payload) -> bool`` (insert inside the
      caller's transaction, a synchronous SQLAlchemy connection; False for a duplicate key) and
      ``notify()``;
    - ``node_id``: written on each request log row; ``target``: the outbox target of the TopS.II
      sender (``tops``).

    The TopS.II sender reports each attempt back through `record_upstream`.
    """

    def __init__(
        self,
        config: AmeyoConfig,
        tops: TopsConfig,
        store: Store,
        outbox: OutboxLike,
        *,
        node_id: str = "",
        target: str = "tops",
    ) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.rules = _rules(config)
        self.recorder = CallbackRecorder(store, outbox, target=target, node_id=node_id, settings=_settings(config, tops))
        self.committer = GroupCommitter(store, max_batch=config.write_batch_max, timeout_s=WRITE_TIMEOUT_S,
                                        before=self.recorder.prepare, after_commit=outbox.notify)
        self.counts: Counter[str] = Counter()
        #: Values forwarded with a stand-in: ``unmapped_hangup_code`` (status `UNMAPPED_STATUS`),
        #: ``time_not_understood`` (the arrival time); exported as ``telephonyd_ameyo_fallbacks``.
        self.fallbacks: Counter[str] = Counter()
        self.state = "created"
        self.tops_unhealthy = False
        self.tops_last_error: str | None = None
        self._stopping = asyncio.Event()
        #: TopS.II results waiting (up to `RESULT_LINGER_S`) to be noted in one unit.
        self._results: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
        self._results_timer: asyncio.TimerHandle | None = None
        self._finished = asyncio.Event()
        #: Refused callbacks (wrong token, network) are counted in ``counts``; logged once per interval.
        self.refusal_log = LogThrottle(log)
        self.open_gauge = Gauge("telephonyd_ameyo_open_to_any_client", "1 while the Ameyo callbacks accept any "
                                "client (no ameyo.token and no ameyo.allowed_networks)", registry=None)
        self.open_gauge.set_function(lambda: 1 if self.open_to_any_client else 0)

    @property
    def open_to_any_client(self) -> bool:
        """True when neither ``ameyo.token`` nor ``ameyo.allowed_networks`` guards the callbacks."""
        return self.config.token is None and not self.config.allowed_networks

    def collectors(self) -> list[Any]:
        """The callback edge's metrics, for ``/metrics``: its instrument and its `AmeyoSection`."""
        return [AmeyoSection(counts=self.counts, fallbacks=self.fallbacks, backlog=lambda: self.committer.backlog,
                             tops_unhealthy=lambda: self.tops_unhealthy), self.open_gauge]

    def warn_if_open(self) -> None:
        """The start-up (and reload) warning when the callbacks are open to any client."""
        if self.open_to_any_client:
            log.warning("Ameyo callbacks are open to any client: set ameyo.token (TELEPHONYD_AMEYO_TOKEN) "
                        "and/or ameyo.allowed_networks", extra={"open_to_any_client": True})

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration (token, networks, TTLs, zone, final dispositions, dry run)."""
        self.config = config.ameyo
        self.rules = _rules(config.ameyo)
        self.recorder.settings = _settings(config.ameyo, config.tops)
        self.committer.max_batch = config.ameyo.write_batch_max
        self.warn_if_open()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to bind (the routes live on the HTTP listener); callbacks queue until `run`.
        Warns when the callbacks are open to any client."""
        self.state = "starting"
        self.warn_if_open()

    async def run(self) -> None:
        self.state = "running"
        self._finished.clear()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.committer.run(), name="ameyo:writer")
                tg.create_task(self._housekeeping(), name="ameyo:housekeeping")
                await self._stopping.wait()
                self._note_results()
                self.committer.close()
        finally:
            self.state = "stopped"
            self._finished.set()

    async def stop(self, timeout: float) -> None:
        """Stop taking callbacks (they answer 503); wait up to ``timeout`` s for `run` to record
        those already accepted."""
        running = self.state == "running"
        self.state = "stopping" if running else "stopped"
        self._stopping.set()
        if running:
            try:
                await asyncio.wait_for(self._finished.wait(), timeout)
            except TimeoutError:
                log.warning("ameyo writer did not drain in time", extra={"backlog": self.committer.backlog})

    def health(self) -> dict[str, Any]:
        running = self.state == "running"
        return {
            "ok": running and not self.tops_unhealthy,
            "state": ("degraded" if self.tops_unhealthy else "running") if running else self.state,
            "counts": dict(self.counts),
            "fallbacks": dict(self.fallbacks),
            "backlog": self.committer.backlog,
            "tops_unhealthy": self.tops_unhealthy,
            "tops_last_error": self.tops_last_error,
            "dry_run": self.recorder.settings.dry_run,
            "open_to_any_client": self.open_to_any_client,
        }

    # -- callbacks -------------------------------------------------------------------------------

    async def handle(self, kind: Literal["start", "end"], path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Route, record and answer one callback: (HTTP status, JSON body)."""
        request_id = requestlog.new_request_id()
        with log_context(request_id=request_id):
            try:
                if kind == "start":
                    route = route_call_start(params, self.rules)
                else:
                    route = route_call_end(params, self.rules, datetime.now(UTC))
                pending = Pending(request_id, path, params, route=route)
                self._note_fallbacks(route, path)
            except CallbackRejected as exc:
                pending = Pending(request_id, path, params, rejection=exc,
                                  channel="call_start" if kind == "start" else "general")
            if self._stopping.is_set():
                self.counts["unavailable"] += 1
                return 503, {"success": False, "error": "shutting down", "request_id": request_id}
            future = self.committer.submit(lambda tx: self.recorder.record(tx, pending), tag=pending)
            # The unit stays queued whatever happens here (the committer skips a future already
            # settled); a timer failing the future is half the cost of asyncio.timeout + shield.
            timer = future.get_loop().call_later(self.config.record_timeout_s, _expire, future)
            try:
                recorded = await future
            except (TimeoutError, StoreError) as exc:
                error = "store timeout" if isinstance(exc, TimeoutError) else str(exc)
                log.error("callback not recorded", extra={"path": path, "error": error})
                if pending.rejection is None:
                    self.counts["unavailable"] += 1
                    return 503, {"success": False, "error": "not recorded, retry later", "request_id": request_id}
                recorded = None
            finally:
                timer.cancel()
            if pending.rejection is not None:
                self.counts["rejected"] += 1
                log.warning("callback rejected", extra={"path": path, "field": pending.rejection.field,
                                                        "error": pending.rejection.message})
                return 400, {"success": False, "error": pending.rejection.message, "field": pending.rejection.field,
                             "request_id": request_id}
            assert pending.route is not None and recorded is not None
            self.counts[recorded.outcome] += 1
            log.info("callback recorded", extra={"flow": pending.route.flow, "outcome": recorded.outcome,
                                                 "call_id": pending.route.call_id, **recorded.detail})
            return 200, {**ACK, "request_id": request_id}

    def _note_fallbacks(self, route: Route, path: str) -> None:
        if route.decision.get("status_from") == "unmapped_hangupCauseCode":
            self.fallbacks["unmapped_hangup_code"] += 1
            log.warning("hangupCauseCode outside the table, forwarded as " + UNMAPPED_STATUS,
                        extra={"path": path, "call_id": route.call_id})
        for warning in route.warnings:
            self.fallbacks["time_not_understood"] += 1
            log.warning("callback time not understood", extra={"path": path, "call_id": route.call_id,
                                                                "warning": warning[:200]})

    async def record_upstream(
        self,
        payload: dict[str, Any],
        outcome: str,
        *,
        status: int | None = None,
        body: str | None = None,
        error: str | None = None,
        attempts: int = 0,
        unhealthy: bool = False,
    ) -> None:
        """Note one TopS.II attempt (``outcome``: delivered, dry_run, retry, dead) on the request log.

        Does not wait for the write (the outbox already holds the delivery state): results are
        noted together, up to `RESULT_LINGER_S` after the first; ``unhealthy`` (an authentication
        or licence refusal) degrades `health` until the next delivery.
        """
        if outcome in ("delivered", "dry_run"):
            self.tops_unhealthy = False
        elif unhealthy:
            self.tops_unhealthy = True
        if error:
            self.tops_last_error = error
        reply = {"status": status, "body": body, "error": error, "attempts": attempts}
        self._results.append((payload, outcome, reply))
        if self.state != "running":  # stopping or stopped: no waiting for others
            self._note_results()
        elif self._results_timer is None:
            self._results_timer = asyncio.get_running_loop().call_later(RESULT_LINGER_S, self._note_results)

    def _note_results(self) -> None:
        """Hand the results gathered since the first one to the writer as one unit (one unit per
        TopS.II reply made a transaction of its own whenever no callback was being recorded)."""
        if self._results_timer is not None:
            self._results_timer.cancel()
            self._results_timer = None
        results, self._results = self._results, []
        if not results:
            return

        def work(tx: Transaction) -> None:
            for payload, outcome, reply in results:
                self.recorder.record_result(tx, payload, outcome, **reply)

        self.committer.submit(work).add_done_callback(_log_failed_result)

    # -- housekeeping ----------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Send (or drop) every expired phone-1 state; returns how many this instance expired."""
        keys = await self.recorder.expired_keys()
        if not keys:
            return 0
        futures = [self.committer.submit(lambda tx, k=key: self.recorder.expire_one(tx, k)) for key in keys]
        done = sum(bool(r) for r in await asyncio.gather(*futures))
        self.counts[PHONE1_EXPIRED] += done
        return done

    async def prune(self) -> tuple[int, int]:
        """Delete request log rows past retention and gates older than every TTL: (rows, gates)."""
        retention = self.config.request_log_retention_s
        gate_age = max(self.config.processing_ttl_s, self.config.dedupe_ttl_s, self.config.phone1_state_ttl_s) + 3600

        def work(tx: Transaction) -> tuple[int, int]:
            return self.recorder.log.prune(tx.conn, retention), self.recorder.gate.prune(tx.conn, gate_age)

        return await self.committer.submit(work)

    async def _housekeeping(self) -> None:
        next_prune = 0.0
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.sweep()
                if time.monotonic() >= next_prune:
                    rows, old_gates = await self.prune()
                    if rows or old_gates:
                        log.info("request log pruned", extra={"rows": rows, "gates": old_gates})
                    next_prune = time.monotonic() + PRUNE_INTERVAL_S
                failures = 0
                delay = self.config.sweep_interval_s
            except STORE_ERRORS as exc:
                raise_if_cancelling()
                failures += 1
                delay = equal_jitter(failures, 2 * self.config.sweep_interval_s, max(300.0, self.config.sweep_interval_s))
                log.warning("ameyo housekeeping failed", extra={"error": str(exc)[:300], "retry_in_s": round(delay, 1)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)


def _expire(future: asyncio.Future[Any]) -> None:
    """``record_timeout_s`` passed: the callback's wait ends with `TimeoutError` (answered 503)."""
    if not future.done():
        future.set_exception(TimeoutError())


def _log_failed_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not note a TopS.II result in the request log", extra={"error": str(future.exception())[:300]})
