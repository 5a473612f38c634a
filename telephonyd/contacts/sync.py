"""`ContactsSync`: keeps ``ps_contacts`` (and an in-memory view) in step with Asterisk's contacts.

Flow: the AMI read loop hands ContactStatus/PeerStatus events to `_on_event`, which only appends
to a queue. One worker task does everything else, in order, so no two steps race:
- applies queued events to the in-memory `ContactTable` (subscribers hear each change), waiting
  ``coalesce_s`` after the oldest queued event so a burst for one contact becomes one write;
- writes the resulting rows in one transaction (`ContactsWriter`), retried with backoff when the
  database fails (the pending changes are kept, coalesced);
- runs resyncs: on every AMI login, FullyBooted and res_pjsip reload (`AMIClient.on_connect`),
  on `resync()` (``POST /api/ami/refresh``) and after a queue overflow. A resync lists every contact
  and reconciles the database in ONE transaction. Events received before the list reply are
  superseded by it and dropped; later ones are applied on top. No step holds the event loop for
  long at 50,000 contacts: the listing is parsed in slices, the pure planning and diffing run in a
  thread, rows are sent in chunks, and the table and the subscribers get the result in slices
  (`resync_slice` contacts per loop turn) while later events wait in the queue;
- owned mode: asks ``PJSIPShowEndpoint`` for the details (expiration, user agent, via...) of new
  contacts, of contacts whose registration was refreshed, and every ``expiry_check_s`` of contacts
  whose ``expiration_time`` passed. A refresh (re-REGISTER) sends no ContactStatus on Asterisk 22.10.1;
  its only AMI trace is the security event ``SuccessfulAuth`` (``Service: PJSIP``) whose ``SessionID``
  is the REGISTER's Call-ID, i.e. the contact's ``call_id`` (lab recording
  ami/events/re_register_events_on.txt), so that event triggers the check when the AMI user reads
  ``security``. A row is only dropped when Asterisk no longer lists it (or, while AMI is down, when
  its expiration passed);
- asterisk mode: every ``expiry_check_s`` our status columns are compared with memory and fixed
  (Asterisk may insert a row after the status event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..backoff import equal_jitter
from ..config import PSContactsConfig
from ..errors import raise_if_cancelling
from ..heap import keep_long_lived
from ..store import Store
from .listing import AMISource, Listing, list_peers, list_pjsip
from .metrics import ContactsSection
from .model import Contact, ContactChange
from .parse import parse_contact_status, parse_peer_status
from .pending import PendingWrites
from .state import ContactTable, scope_diff
from .stats import LatencyStats
from .upkeep import SYNC_ERRORS, EndpointVerifier, UpkeepMixin
from .writer import ContactsWriter

log = logging.getLogger(__name__)

#: The AMI events the sync takes in (PJSIP ContactStatus, chan_sip/IAX2 PeerStatus, and
#: SuccessfulAuth, the only event Asterisk 22 sends on a re-REGISTER).
EVENTS = ("ContactStatus", "PeerStatus", "SuccessfulAuth")

ChangeCallback = Callable[[ContactChange], None]
BatchCallback = Callable[[list[ContactChange]], None]


class ContactsSync(UpkeepMixin):
    """Contacts of one Asterisk server, in ``ps_contacts`` and in memory.

    ``store``: the Store holding ``ps_contacts`` (the main one, or the one for ``ps_contacts.url``),
    started by the caller with this package's ``schema.metadata``. ``ami``: the AMI client
    (subscribe/on_connect/list_action/connected). ``config``: the ``ps_contacts`` section.
    ``node_id``: the default ``reg_server`` (``ps_contacts.reg_server`` overrides it); in owned mode
    rows carry it and resyncs only touch rows carrying it.
    """

    #: Failed writes are retried after ``retry_base_s`` doubling up to ``retry_max_s``.
    retry_base_s = 0.5
    retry_max_s = 30.0
    #: A failed resync (listing refused, database down) is retried after this, doubling to 300 s.
    resync_retry_base_s = 5.0
    #: Events applied per worker step; the rest wait for the next step, so a backlog never holds the
    #: event loop for long (about 25 µs per event).
    apply_slice = 1000
    #: Contacts put into the table (then changes notified) per event-loop turn by a resync; as
    #: many as presence re-reads per turn (its sync_slice), so a notified slice is one turn there too.
    resync_slice = 500
    #: After this many applied changes the objects built for them (contacts, presence agents) are
    #: moved out of the collector's full passes (`telephonyd.heap`): a flood that changes every one of
    #: 50,000 contacts otherwise leaves them for a 70 ms full collection.
    freeze_every = 10_000

    def __init__(self, store: Store, ami: AMISource, config: PSContactsConfig, *, node_id: str) -> None:
        self.store = store
        self.ami = ami
        self.config = config
        self.owned = config.mode == "owned"
        self.reg_server = config.reg_server if config.reg_server is not None else node_id
        self.table = ContactTable(self.reg_server if self.owned else None)
        self.writer = ContactsWriter(store, reg_server=self.reg_server, owned=self.owned)
        self.latency = LatencyStats()
        self._queue: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._interrupt = asyncio.Event()
        self._stopping = asyncio.Event()
        self._resync_waiters: list[asyncio.Future[dict[str, Any]]] = []
        self._resync_wanted = False
        self._resync_failures = 0
        self._resync_after = 0.0
        self._expiry_due = False
        self._pending = PendingWrites(owned=self.owned)
        self._verifier = EndpointVerifier(reg_server=self.reg_server, max_endpoints=config.verify_max_endpoints)
        self._snapshot_seq: dict[str, int] = {}
        self._subscribers: list[ChangeCallback] = []
        self._changes_since_freeze = 0
        self._batch_subscribers: list[BatchCallback] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._failures = 0
        self._state = "stopped"
        self._last_error: str | None = None
        self.last_resync: dict[str, Any] | None = None
        self.counters = {"events": 0, "ignored": 0, "superseded": 0, "batches": 0, "rows_written": 0,
                         "write_failures": 0, "resyncs": 0, "overflows": 0}

    def collectors(self) -> list[ContactsSection]:
        """The sync's metrics (``telephonyd_contacts*``), read from its table and counters."""
        return [ContactsSection(contacts=lambda: list(self.table.values()), pending_writes=lambda: len(self._pending),
                                counts=self.counters)]

    # -- consumer API ----------------------------------------------------------------------------

    def contacts_by_endpoint(self) -> dict[str, list[Contact]]:
        """Current contacts by endpoint name, latest registration (greatest expiration) first.

        O(all contacts): for listings; per-endpoint readers use `contacts_of`.
        """
        return self.table.by_endpoint()

    def contacts_of(self, endpoint: str) -> list[Contact]:
        """One endpoint's contacts, latest registration first (O(its contacts), from the index)."""
        return self.table.contacts_of(endpoint)

    def endpoints(self) -> list[str]:
        """Endpoints having at least one contact now."""
        return list(self.table.endpoints())

    def contact_count(self) -> int:
        return len(self.table)

    def subscribe_batch(self, callback: BatchCallback) -> Callable[[], None]:
        """Call ``callback([ContactChange, ...])`` once per applied batch (a queue drain, a resync,
        an endpoint check), synchronously; it must not block."""
        self._batch_subscribers.append(callback)
        return lambda: self._batch_subscribers.remove(callback) if callback in self._batch_subscribers else None

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(ContactChange)`` (synchronously; must not block) for each change."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def resync(self) -> dict[str, Any]:
        """List every contact from Asterisk and reconcile; returns counts and ``duration_s``.

        Raises `AMINotConnected` (no session), `ListingFailed`, `StoreError` or `TimeoutError`.
        """
        if self._worker is None or self._worker.done():
            return await self._resync_now()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._resync_waiters.append(future)
        self._interrupt.set()
        self._wake.set()
        return await future

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the table's columns, then subscribe to the AMI client (resyncs follow every login).

        Raises `StoreError` when ``ps_contacts`` lacks ``id``, ``reg_server`` or our columns.
        """
        async with asyncio.timeout(self.config.store_timeout_s):
            await self.writer.prepare()
        self._unsubscribe = [*self.listen(), self.ami.on_connect(self._on_ami_connect)]
        self._state = "waiting_for_ami"

    async def run(self) -> None:
        """The worker (events, writes, resyncs, expiry) until `stop`."""
        self._worker = asyncio.create_task(self._work(), name="contacts-worker")
        ticker = asyncio.create_task(self._ticker(), name="contacts-expiry")
        try:
            await self._worker
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self._state = "stopped"

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking events, write what is pending (within ``timeout``) and end `run`."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._stopping.set()
        self._interrupt.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            done, _ = await asyncio.wait({worker}, timeout=timeout)
            if not done:
                worker.cancel()

    def health(self) -> dict[str, Any]:
        state = self._state
        if state in ("synced", "waiting_for_ami"):
            if not self.ami.connected:
                state = "waiting_for_ami"
            elif self._failures:
                state = "store_failing"
            elif self._resync_failures:
                state = "resync_failing"
            elif state == "waiting_for_ami":
                state = "resyncing"  # logged in, the first listing not done yet
        return {
            "ok": state == "synced",
            "state": state,
            "mode": self.config.mode,
            "reg_server": self.reg_server,
            "contacts": len(self.table),
            "queued_events": len(self._queue),
            "pending_writes": len(self._pending),
            "last_resync": self.last_resync,
            "last_error": self._last_error,
            "event_to_row_ms": self.latency.summary_ms(),
            "id_clashes": self.writer.clashes,
            "endpoint_checks": self._verifier.checked,
            **self.counters,
        }

    # -- AMI side (runs in the read loop: enqueue only) -------------------------------------------

    def listen(self) -> list[Callable[[], None]]:
        """Subscribe the event intake to the AMI client's `EVENTS`; returns the unsubscribers.
        `start` does it; an offline replay (``telephonyd replay``) does it alone, with no store."""
        return [self.ami.subscribe(name, self._on_event) for name in EVENTS]

    def _on_event(self, message: Any) -> None:
        self._queue.append(message)
        if len(self._queue) > self.config.max_queue:
            self._queue.clear()
            self.counters["overflows"] += 1
            self._resync_wanted = True
            self._interrupt.set()
        self._wake.set()

    async def _on_ami_connect(self, _client: Any) -> None:
        try:
            result = await self.resync()
        except SYNC_ERRORS as exc:
            raise_if_cancelling()
            if self.ami.connected:  # otherwise the next login resyncs
                log.warning("ps_contacts resync failed, retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
            return
        log.info("ps_contacts resynced", extra=result)

    # -- the worker ------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._resync_waiters or (self._resync_wanted and self.ami.connected
                                        and time.monotonic() >= self._resync_after):
                await self._serve_resync()
            if self._queue:
                delay = self._queue[0].received_at + self.config.coalesce_s - time.monotonic()
                if delay > 0 and not self._interrupt.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._interrupt.wait(), delay)
                self.apply_queued(self.apply_slice)
            if self._expiry_due:
                self._expiry_due = False
                await self._expire()
            if self._verifier.wanted and self.owned:
                await self._verify_endpoints()
            if self._pending:
                if time.monotonic() >= self._retry_at or self._stopping.is_set():
                    await self._flush()
                if self._pending and not self._stopping.is_set() and self._retry_timer is None:
                    self._retry_timer = asyncio.get_running_loop().call_later(
                        max(0.0, self._retry_at - time.monotonic()), self._retry_due)
            if self._stopping.is_set():
                return
            self._interrupt.clear()
            if self._queue or self._resync_waiters:
                self._wake.set()

    def _retry_due(self) -> None:
        self._retry_timer = None
        self._wake.set()

    def apply_queued(self, limit: int | None = None) -> None:
        """Apply queued events (at most ``limit``, oldest first) and notify once for the batch.
        The worker calls it after ``coalesce_s``; an offline replay calls it after each event."""
        if limit is None or len(self._queue) <= limit:
            batch: Any = self._queue
            self._queue = deque()
        else:
            batch = [self._queue.popleft() for _ in range(limit)]
        now = time.time()
        changes: list[ContactChange] = []
        for message in batch:
            self.counters["events"] += 1
            name = (message.event or "").lower()
            change: ContactChange | None = None
            if name == "contactstatus":
                event = parse_contact_status(message)
                if event is None:
                    self.counters["ignored"] += 1
                    continue
                if self._superseded(event.seq, "PJSIP", event.endpoint):
                    continue
                change = self.table.apply_status(event, now)
            elif name == "successfulauth":
                self._refreshed(message)
                continue
            elif name == "peerstatus" and self.owned:
                peer = parse_peer_status(message)
                if peer is None or self._superseded(peer.seq, peer.tech, None):
                    continue
                change = self.table.apply_peer(peer, now)
            if change is not None:
                self._mark(change, message.received_at)
                changes.append(change)
        self._notify(changes)

    def _refreshed(self, message: Any) -> None:
        """A REGISTER (or any request) authenticated: when its Call-ID is a contact's, the contact
        was refreshed and its new expiration is read with PJSIPShowEndpoint (owned mode)."""
        if not self.owned or (message.get("Service") or "") != "PJSIP":
            return
        endpoint = self.table.endpoint_of_call(message.get("SessionID") or "")
        if endpoint is not None:
            self._verifier.want((endpoint,))

    def _superseded(self, seq: int, tech: str, endpoint: str | None) -> bool:
        snapshot = self._snapshot_seq.get(tech, 0)
        if endpoint is not None:
            snapshot = max(snapshot, self._verifier.seqs.get(endpoint, 0))
        if seq and seq < snapshot:
            self.counters["superseded"] += 1
            return True
        return False

    def _mark(self, change: ContactChange, since: float) -> None:
        self._pending.mark(change, since)
        contact = change.contact
        if self.owned and change.kind == "added" and contact.tech == "PJSIP" and contact.endpoint:
            self._verifier.want((contact.endpoint,))

    def _notify(self, changes: list[ContactChange]) -> None:
        if not changes:
            return
        for batch_callback in list(self._batch_subscribers):
            try:
                batch_callback(changes)
            except Exception:
                log.exception("contact change subscriber failed")
        for change in changes:
            for callback in list(self._subscribers):
                try:
                    callback(change)
                except Exception:
                    log.exception("contact change subscriber failed")
        self._changes_since_freeze += len(changes)
        if self._changes_since_freeze >= self.freeze_every:
            self._changes_since_freeze = 0
            keep_long_lived()

    async def _flush(self) -> None:
        batch = self._pending.take()
        try:
            async with asyncio.timeout(self.config.store_timeout_s):
                await self.writer.apply(rows=batch.rows, statuses=batch.statuses, deletes=batch.deletes)
        except SYNC_ERRORS as exc:
            self._pending.restore(batch)
            raise_if_cancelling()
            self._write_failed(exc)
            return
        committed = time.monotonic()
        self.latency.add_many(committed - t for t in batch.since.values())
        self.counters["batches"] += 1
        self.counters["rows_written"] += len(batch)
        if self._failures:
            log.info("ps_contacts writes resumed", extra={"after_failures": self._failures})
        self._failures = 0
        self._retry_at = 0.0

    def _write_failed(self, exc: BaseException) -> None:
        self._failures += 1
        self.counters["write_failures"] += 1
        self._last_error = f"{type(exc).__name__}: {exc}"[:300]
        delay = equal_jitter(min(self._failures, 11), self.retry_base_s, self.retry_max_s)
        self._retry_at = time.monotonic() + delay
        log.warning("ps_contacts write failed, retrying", extra={"error": self._last_error, "retry_in_s": delay})

    # -- resync ----------------------------------------------------------------------------------

    async def _serve_resync(self) -> None:
        waiters, self._resync_waiters = self._resync_waiters, []
        self._resync_wanted = False
        try:
            result = await self._resync_now()
        except Exception as exc:  # handed to the callers; bugs re-raised below
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, SYNC_ERRORS):
                raise
            self._last_error = f"resync: {type(exc).__name__}: {exc}"[:300]
            self._resync_failures += 1
            if self.ami.connected and not self._stopping.is_set():
                self._resync_wanted = True
                delay = equal_jitter(min(self._resync_failures, 7), self.resync_retry_base_s, 300.0)
                self._resync_after = time.monotonic() + delay
                asyncio.get_running_loop().call_later(delay, self._wake.set)
            if not waiters:
                log.warning("ps_contacts resync failed", extra={"error": self._last_error})
            return
        self._resync_failures = 0
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(result)

    async def _apply_resync(self, listed: dict[str, Contact], changes: list[ContactChange]) -> None:
        """Put ``listed`` into the table, drop the removed contacts, then notify ``changes``: at
        most `resync_slice` items per event-loop turn. A reader between two slices sees each
        contact either as it was or as listed, never a table missing unchanged contacts."""
        items = list(listed.items())
        removed = [change.contact.id for change in changes if change.kind == "removed"]
        for start in range(0, len(items), self.resync_slice):
            await asyncio.sleep(0)
            self.table.put_many(items[start:start + self.resync_slice])
            keep_long_lived()  # the table lives until the next resync: out of the full collections
        for start in range(0, len(removed), self.resync_slice):
            await asyncio.sleep(0)
            for cid in removed[start:start + self.resync_slice]:
                self.table.remove(cid)
        for start in range(0, len(changes), self.resync_slice):
            await asyncio.sleep(0)
            self._notify(changes[start:start + self.resync_slice])
            keep_long_lived()  # and what the subscribers built from them (presence agents)
            self._changes_since_freeze = 0

    async def _resync_now(self) -> dict[str, Any]:
        started = time.monotonic()
        self.apply_queued()
        if self._pending:
            await self._flush()
        listing = Listing()
        rs = self.reg_server if self.owned else None
        await list_pjsip(self.ami, listing, reg_server=rs)
        if self.owned:
            await list_peers(self.ami, listing, reg_server=rs)
        scopes = listing.scopes
        self._snapshot_seq.update(listing.seqs)

        def in_scope(contact: Contact) -> bool:
            return contact.tech in scopes

        async with asyncio.timeout(self.config.store_timeout_s):
            plan, listed = await self.writer.reconcile(listing.contacts, scope=in_scope)
        keep_long_lived()  # the stamped listing becomes the table
        # Only this worker changes the table, so the diff of a copy (one C-level dict copy) made
        # off the loop still holds when it is applied, slice by slice, below. Events queued
        # meanwhile wait in ``_queue`` and are applied after it, in order.
        changes = await asyncio.to_thread(scope_diff, dict(self.table.by_id), listed, in_scope)
        keep_long_lived()
        await self._apply_resync(listed, changes)
        self._pending.drop(lambda cid: cid in listed or Contact(cid).tech in scopes)
        if "PJSIP" in scopes:
            self._verifier.reset()
        self.counters["resyncs"] += 1
        self._state = "synced"
        if plan.missing:
            log.warning("contacts Asterisk has but did not write to ps_contacts (realtime not mapped?)",
                        extra={"missing": len(plan.missing)})
        self.last_resync = {**plan.counts(), "total": len(listed), "sources": listing.sources,
                            "duration_s": round(time.monotonic() - started, 3), "at": time.time()}
        return dict(self.last_resync)
