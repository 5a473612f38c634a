"""`VICIdialSource`: VICIdial's final call statuses to the DID Optimizer, through the outbox.

Each poll, per table (``vicidial_log``; ``vicidial_closer_log`` unless ``closer_log: false``):

1. new rows: ``vicidial_log`` by ``call_date`` from the head checkpoint (index order, whole seconds,
   see `VICIdialReader.by_call_date`); the closer log by ``closecallid`` (its AUTO_INCREMENT key,
   i.e. insertion order);
2. calls last seen in a transient status (``INCALL``, ``DISPO``, ``QUEUE``...), by primary key
   (all of them, up to `OPEN_BATCHES` batches);
3. rows inserted with a ``call_date`` already behind the head within the last ``late_insert_s``
   (the dialer writes the time the call was placed): per-second counts from the ``call_date``
   index, compared with the calls seen per second, name the seconds to read again;
4. one batch of the sweep through the re-read window (``call_date`` from ``now - reread_window_s``
   up to the head), which catches later corrections (a SALE changed to DNC) and rows VICIdial
   inserted with a ``call_date`` already behind the head;

then ONE store transaction (`ledger.commit`): the outbox rows of every newly seen final status, the
statuses seen and the new checkpoint, compare-and-set on the checkpoint's version so that two
instances on one store never both commit a batch. A full batch polls again at once (catching up);
otherwise the next poll is ``poll_interval_s`` later. Nothing is ever written to VICIdial.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from ..backoff import equal_jitter
from ..errors import raise_if_cancelling
from .ledger import Checkpoint, CheckpointMoved, Observed
from . import ledger
from .payload import CLOSER_LOG, LOG, build_payload, call_key, date_text, outbox_key
from .reader import StatusBook, VICIdialReader

if TYPE_CHECKING:
    from ..config import VICIdialConfig
    from ..outbox import Outbox
    from ..store import Store

log = logging.getLogger(__name__)

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Open calls re-read per poll: up to this many primary-key batches (calls left INCALL for good
#: must not starve the others; they leave with the re-read window).
OPEN_BATCHES = 10


def parse_date(text: str) -> datetime:
    return datetime.strptime(text, DATE_FORMAT)


class VICIdialSource:
    """Component (start/run/stop/health) reading VICIdial's database into the outbox.

    Args:
        config: the ``vicidial`` section.
        store: telephonyd's started `Store` (its schemas include ``telephonyd.vicidial.metadata``).
        outbox: the `Outbox` (rows added with `Outbox.add` inside the commit, then `notify`).
        target: the DID Optimizer's outbox target.
        reader: a `VICIdialReader` (tests and the benchmark pass their own), else one on ``config.url``.
    """

    def __init__(self, config: VICIdialConfig, store: Store, outbox: Outbox, *, target: str, node_id: str,
                 reader: VICIdialReader | None = None) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.target = target
        self.node_id = node_id
        if reader is None:
            assert config.url is not None
            reader = VICIdialReader(config.url.get_secret_value(), query_timeout_s=config.query_timeout_s)
        self.reader = reader
        self.tables = [LOG] + ([CLOSER_LOG] if config.closer_log else [])
        self.transient = {s.strip().upper() for s in config.transient_statuses}
        self._book: StatusBook | None = None
        self._book_at = 0.0
        self._stopping = asyncio.Event()
        self._run_done = asyncio.Event()
        self._state = "created"
        self.polls = 0
        self.last_poll_s = 0.0
        self.conflicts = 0
        self.late_rows = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_poll_at: float | None = None
        self.table_state: dict[str, dict[str, Any]] = {t: {} for t in self.tables}
        labels = ["table"]
        self.m_rows = Counter("telephonyd_vicidial_rows_read", "VICIdial rows read", labels, registry=None)
        self.m_reported = Counter("telephonyd_vicidial_reported", "final statuses queued to the outbox",
                                  labels, registry=None)
        self.m_lag = Gauge("telephonyd_vicidial_lag_seconds",
                           "newest call_date in VICIdial minus the head checkpoint", labels, registry=None)
        self.m_open = Gauge("telephonyd_vicidial_open_calls", "calls waiting in a transient status",
                            labels, registry=None)
        self.m_polls = Counter("telephonyd_vicidial_polls", "polls of VICIdial's database", registry=None)
        self.m_errors = Counter("telephonyd_vicidial_errors", "failed polls", registry=None)
        self.m_conflicts = Counter("telephonyd_vicidial_checkpoint_conflicts",
                                   "batches another instance committed first", registry=None)
        self.m_queries = Gauge("telephonyd_vicidial_queries", "statements sent to VICIdial's database so far",
                               registry=None)
        self.m_queries.set_function(lambda: self.reader.queries)

    def instruments(self) -> list[Any]:
        """The prometheus_client instruments this component owns (registered by the app)."""
        return [self.m_rows, self.m_reported, self.m_lag, self.m_open, self.m_polls, self.m_errors,
                self.m_conflicts, self.m_queries]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reader.start()
        self._state = "ready"

    async def run(self) -> None:
        if self._stopping.is_set():
            return
        self._state = "running"
        try:
            await self._loop()
        finally:
            self._run_done.set()

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                more = await self.poll_once()
                failures, delay = 0, self.config.poll_interval_s
            except Exception as exc:  # noqa: BLE001 - a peer outage degrades health, the loop goes on
                raise_if_cancelling()
                self.m_errors.inc()
                self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                self.last_error_at = time.time()
                log.warning("VICIdial poll failed", extra={"error": self.last_error})
                more = False
                failures += 1
                delay = equal_jitter(failures, 2 * self.config.poll_interval_s, max(60.0, self.config.poll_interval_s))
            if more:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self, timeout: float) -> None:
        """Let a poll in progress finish (within ``timeout`` s), then close the reader."""
        was_running = self._state == "running"
        self._stopping.set()
        self._state = "stopping"
        if was_running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._run_done.wait(), max(0.1, timeout))
        await self.reader.close()
        self._state = "stopped"

    def health(self) -> dict[str, Any]:
        """``ok``, ``state``, ``polls``, ``conflicts``, ``queries``, ``reread_window_s``,
        ``last_poll_s`` (duration of the last poll), ``last_error``/``last_error_at``, and per table: ``head_date``, ``head_key``, ``sweep_date``,
        ``newest`` (newest ``call_date``), ``lag_s`` (newest minus head), ``rows_read``,
        ``reported``, ``open_calls``."""
        failing = self.last_error_at is not None and (self.last_poll_at or 0) < self.last_error_at
        return {
            "ok": self._state in ("ready", "running") and not failing,
            "state": "degraded" if failing and self._state == "running" else self._state,
            "polls": self.polls,
            "last_poll_s": self.last_poll_s,
            "conflicts": self.conflicts,
            "late_rows": self.late_rows,
            "queries": self.reader.queries,
            "reread_window_s": self.config.reread_window_s,
            "poll_interval_s": self.config.poll_interval_s,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "tables": {t: dict(s) for t, s in self.table_state.items()},
        }

    # -- one poll --------------------------------------------------------------------------------

    async def poll_once(self) -> bool:
        """Read and commit one batch per table; True when a table had more rows waiting."""
        more = False
        started = time.monotonic()
        now = await self.reader.now()
        await self._refresh_statuses()
        for table in self.tables:
            more |= await self._poll_table(table, now)
        self.polls += 1
        self.last_poll_s = round(time.monotonic() - started, 3)
        self.m_polls.inc()
        self.last_poll_at = time.time()
        return more

    async def _refresh_statuses(self) -> None:
        if self._book is None or time.monotonic() - self._book_at > self.config.statuses_refresh_s:
            self._book = await self.reader.status_book()
            self._book_at = time.monotonic()

    async def _start_position(self, table: str, window_start: datetime) -> tuple[str, str]:
        if table == CLOSER_LOG:
            return date_text(window_start), str(await self.reader.first_closecallid_since(window_start))
        return date_text(window_start), ""

    async def _poll_table(self, table: str, now: datetime) -> bool:
        window_start = now - timedelta(seconds=self.config.reread_window_s)
        window_text = date_text(window_start)
        async with self.store.connect() as conn:
            known = await conn.run_sync(lambda c: ledger.load_checkpoint(c, table))
        if known is None:  # first poll ever: start at the beginning of the re-read window
            start_date, start_key = await self._start_position(table, window_start)
            await self.store.write(lambda c: ledger.ensure_checkpoint(c, table, start_date, start_key, self.node_id))

        def load(conn: Any) -> tuple[Checkpoint | None, list[str], int]:
            return (ledger.load_checkpoint(conn, table),
                    ledger.open_keys(conn, table, window_text, self.config.batch_size * OPEN_BATCHES),
                    ledger.count_open(conn, table, window_text))

        async with self.store.connect() as conn:
            loaded, open_keys, open_count = await conn.run_sync(load)
        assert loaded is not None
        before = loaded
        batch = self.config.batch_size
        # The newest row when this poll began: the lag is what the poll left of it.
        newest, top = await self.reader.newest(table)
        after = Checkpoint(table, before.head_date, before.head_key, before.sweep_date, before.version,
                           before.rows_read, before.reported, self.node_id)
        # 1. new rows
        if table == CLOSER_LOG:
            head_rows = await self.reader.closer_after(int(before.head_key or 0), batch)
            more = len(head_rows) >= batch
            if head_rows:
                after.head_key = str(head_rows[-1]["closecallid"])
                after.head_date = max(before.head_date, date_text(head_rows[-1]["call_date"]))
        else:
            read = await self.reader.by_call_date(LOG, parse_date(before.head_date), None, batch)
            head_rows, more = read.rows, not read.complete
            after.head_date = date_text(read.next_date)
        # 2. calls still open
        open_rows = []
        for i in range(0, len(open_keys), batch):  # every open call, one bounded IN list at a time
            open_rows += await self.reader.by_keys(table, open_keys[i:i + batch])
        # 3. rows inserted behind the head lately (the dialer writes call_date = when the call was placed)
        late_rows = await self._late_rows(table, window_start, before.head_date, after.head_date)
        # 4. the sweep through the re-read window
        sweep_from = max(parse_date(before.sweep_date), window_start)
        sweep = await self.reader.by_call_date(table, sweep_from, parse_date(before.head_date), batch)
        after.sweep_date = window_text if sweep.complete else date_text(sweep.next_date)
        rows = {call_key(table, r): r for r in (*sweep.rows, *late_rows, *open_rows, *head_rows)}
        after.rows_read = before.rows_read + len(head_rows) + len(open_rows) + len(late_rows) + len(sweep.rows)
        observed = await self._observe(table, rows)
        try:
            done = await self.store.write(lambda conn: ledger.commit(
                conn, before=before, after=after, observed=observed, add=self.outbox.add, target=self.target,
                prune_before=window_text, prune_limit=4 * batch,
            ))
        except CheckpointMoved:
            self.conflicts += 1
            self.m_conflicts.inc()
            log.info("VICIdial batch committed by another instance first", extra={"table": table})
            return True
        if done.reported:
            self.outbox.notify()
            log.info("VICIdial dispositions queued", extra={"table": table, "reported": done.reported})
        self.m_rows.labels(table).inc(after.rows_read - before.rows_read)
        self.m_reported.labels(table).inc(done.reported)
        lag = max(0.0, (newest - parse_date(after.head_date)).total_seconds()) if newest else 0.0
        self.m_lag.labels(table).set(lag)
        self.m_open.labels(table).set(open_count)
        state = self.table_state[table]
        state.update(head_date=after.head_date, head_key=after.head_key, sweep_date=after.sweep_date,
                     newest=date_text(newest) if newest else None, lag_s=lag,
                     rows_read=after.rows_read, reported=before.reported + done.reported,
                     open_calls=open_count, version=before.version + 1)
        if table == CLOSER_LOG and top is not None:
            state["behind_rows"] = max(0, top - int(after.head_key or 0))
        return more

    async def _late_rows(self, table: str, window_start: datetime, head_before: str, head_after: str) -> list[dict[str, Any]]:
        """Rows of the last ``late_insert_s`` behind the head that were inserted after the head
        passed their second: per-second counts from VICIdial's ``call_date`` index against the
        calls seen per second; only the seconds that gained rows are read."""
        if table != LOG or self.config.late_insert_s <= 0:
            return []
        upper = min(head_before, head_after)
        since = max(parse_date(upper) - timedelta(seconds=self.config.late_insert_s), window_start)
        if date_text(since) >= upper:
            return []
        theirs = await self.reader.counts_by_second(table, since, parse_date(upper))
        async with self.store.connect() as conn:
            ours = await conn.run_sync(lambda c: ledger.seen_per_second(c, table, date_text(since), upper))
        gained = sorted(sec for sec, n in theirs.items() if n > ours.get(date_text(sec), 0))
        if not gained:
            return []
        rows = await self.reader.by_seconds(table, gained[:self.config.batch_size])
        self.late_rows += len(rows)
        return rows

    async def _observe(self, table: str, rows: dict[str, dict[str, Any]]) -> list[Observed]:
        """What each row says now; DIDs looked up only for statuses not seen before."""
        keys = list(rows)
        async with self.store.connect() as conn:
            last = await conn.run_sync(lambda c: ledger.seen_statuses(c, table, keys))
        book = self._book or StatusBook({}, {})
        fresh = {k: r for k, r in rows.items() if _status(r) != last.get(k)}
        finals = [r for r in fresh.values() if _status(r) not in self.transient]
        dials = await self.reader.dial_matches(finals, self.config.did_match_s) if finals else {}
        stamp = int(time.time())
        observed: list[Observed] = []
        for key, row in fresh.items():
            status = _status(row)
            is_open = status in self.transient
            dial = dials.get(str(row.get("uniqueid")))
            report = None
            if not is_open:
                flags = book.flags(str(row.get("campaign_id") or ""), status)

                def make(uniqueid: str, reported: bool, row: dict[str, Any] = row, flags: Any = flags,
                         dial: Any = dial) -> dict[str, Any]:
                    return build_payload(table, row, flags=flags, dial=dial, outcome_reported=reported,
                                         timestamp=stamp, uniqueid=uniqueid)

                report = (outbox_key(table, row, status), make)
            candidates = (str(row.get("uniqueid") or ""), dial.uniqueid if dial else "")
            observed.append(Observed(key, status, date_text(row.get("call_date")), is_open, report, candidates))
        return observed


def _status(row: dict[str, Any]) -> str:
    return str(row.get("status") or "").strip().upper()
