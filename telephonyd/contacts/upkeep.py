"""Owned-mode upkeep: asking Asterisk about the contacts of single endpoints.

A ContactStatus event carries no expiration, user agent or via address, and a registration
refresh moves the expiration without any event saying so. So new contacts, and contacts whose
``expiration_time`` has passed, are checked with one ``PJSIPShowEndpoint`` per endpoint (its
ContactStatusDetail items carry ``RegExpire``, ``UserAgent``, ``ViaAddress``...). A contact Asterisk
no longer lists is dropped; one it still has gets its new details. Too many endpoints at once (a
registration storm) ask for one full resync instead. Expirations are Asterisk's epoch seconds,
compared with this host's clock (the daemon runs beside Asterisk).

In asterisk mode the periodic task instead compares our status columns with memory and rewrites
the ones that differ (Asterisk may insert a row after announcing the contact).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from ..config import PSContactsConfig
from ..errors import TelephonydError, raise_if_cancelling
from ..store import STORE_ERRORS
from .listing import AMISource, list_endpoint
from .model import Contact, ContactChange
from .pending import PendingWrites
from .state import ContactTable, stamp
from .writer import ContactsWriter

log = logging.getLogger(__name__)

_CONCURRENCY = 8

#: What a database or AMI failure raises (the store's list and the AMI's `TelephonydError`s);
#: anything else is a bug and ends the process.
SYNC_ERRORS = (*STORE_ERRORS, TelephonydError)


class EndpointVerifier:
    """Endpoints waiting for a check, and the list-reply position of each one checked."""

    def __init__(self, *, reg_server: str, max_endpoints: int) -> None:
        self.reg_server = reg_server
        self.max_endpoints = max_endpoints
        self.wanted: set[str] = set()
        self.seqs: dict[str, int] = {}
        self.checked = 0

    def want(self, endpoints: Iterable[str]) -> None:
        self.wanted.update(endpoints)

    def too_many(self) -> bool:
        return len(self.wanted) > self.max_endpoints

    def reset(self) -> None:
        """After a full resync: nothing to check, no per-endpoint snapshot newer than it."""
        self.wanted.clear()
        self.seqs.clear()

    @staticmethod
    def expired(table: ContactTable, now: float) -> tuple[list[Contact], list[Contact]]:
        """Contacts past their expiration: (checkable by endpoint, without an endpoint)."""
        by_endpoint: list[Contact] = []
        orphans: list[Contact] = []
        for contact in table.values():
            if contact.expiration_time and contact.expiration_time < now:
                (by_endpoint if contact.endpoint and contact.tech == "PJSIP" else orphans).append(contact)
        return by_endpoint, orphans

    async def verify(self, ami: AMISource, table: ContactTable, now: float) -> list[ContactChange]:
        """Check every wanted endpoint; apply what Asterisk says to ``table``; return the changes."""
        endpoints, self.wanted = sorted(self.wanted), set()
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def one(endpoint: str) -> tuple[str, tuple[int, dict[str, Contact]] | None]:
            async with limit:
                return endpoint, await list_endpoint(ami, endpoint, reg_server=self.reg_server)

        try:
            results = await asyncio.gather(*(one(e) for e in endpoints))
        except (TelephonydError, OSError, TimeoutError) as exc:
            log.info("contact check skipped, the next resync covers it", extra={"error": str(exc)})
            return []
        self.checked += len(endpoints)
        asked = set(endpoints)
        current: dict[str, dict[str, Contact]] = {}
        for endpoint in asked:
            for contact in table.contacts_of(endpoint):
                if contact.tech == "PJSIP":
                    current.setdefault(endpoint, {})[contact.id] = contact
        changes: list[ContactChange] = []
        for endpoint, found in results:
            if found is None:
                continue  # unknown endpoint or error: nothing can be concluded
            seq, listed = found
            self.seqs[endpoint] = seq
            mine = current.get(endpoint, {})
            merged = {cid: _merge(mine.get(cid), c) for cid, c in listed.items()}

            def in_scope(contact: Contact, endpoint: str = endpoint) -> bool:
                return contact.tech == "PJSIP" and contact.endpoint == endpoint

            changes.extend(table.replace_scope(stamp(merged, mine, now), in_scope, endpoint=endpoint))
        return changes


class UpkeepMixin:
    """The periodic upkeep of `ContactsSync`: expiry checks, endpoint checks, the asterisk-mode
    status sweep. Mixed into ContactsSync, which owns the attributes and the three methods declared
    here; everything runs in its worker task."""

    config: PSContactsConfig
    owned: bool
    ami: AMISource
    table: ContactTable
    writer: ContactsWriter
    _verifier: EndpointVerifier
    _pending: PendingWrites
    _wake: asyncio.Event
    _expiry_due: bool
    _resync_wanted: bool

    def _mark(self, change: ContactChange, since: float) -> None: ...
    def _notify(self, changes: list[ContactChange]) -> None: ...
    def _write_failed(self, exc: BaseException) -> None: ...

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_check_s)
            self._expiry_due = True
            self._wake.set()

    async def _expire(self) -> None:
        if not self.owned:
            await self._sweep_statuses()
            return
        checkable, orphans = self._verifier.expired(self.table, time.time())
        if self.ami.connected:
            self._verifier.want(c.endpoint for c in checkable if c.endpoint)
            self._resync_wanted = self._resync_wanted or any(c.tech == "PJSIP" for c in orphans)
            return
        changes = [c for c in (self.table.remove(x.id) for x in checkable + orphans) if c is not None]
        for change in changes:
            self._mark(change, time.monotonic())
        if changes:
            log.info("expired contacts dropped while AMI is down", extra={"count": len(changes)})
        self._notify(changes)

    async def _verify_endpoints(self) -> None:
        if not self.ami.connected:
            return
        if self._verifier.too_many():
            self._verifier.wanted.clear()
            self._resync_wanted = True
            self._wake.set()
            return
        changes = await self._verifier.verify(self.ami, self.table, time.time())
        since = time.monotonic()
        for change in changes:
            self._pending.mark(change, since)
        self._notify(changes)

    async def _sweep_statuses(self) -> None:
        try:
            async with asyncio.timeout(self.config.store_timeout_s):
                stale = await self.writer.stale_statuses(self.table.by_id)
        except SYNC_ERRORS as exc:
            raise_if_cancelling()
            self._write_failed(exc)
            return
        for contact in stale:
            self._pending.mark_status(contact, time.monotonic())


def _merge(current: Contact | None, detail: Contact) -> Contact:
    """ContactStatusDetail lacks PruneOnBoot: keep what the full listing had said."""
    if current is None:
        return detail
    return detail.replace(prune_on_boot=detail.prune_on_boot or current.prune_on_boot)
