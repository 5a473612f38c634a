"""The in-memory contact table, event application and resync planning (pure: no I/O).

Rules:
- A ContactStatus for an unknown contact creates it (a REGISTER); ``Removed`` deletes it; a status
  equal to the current one (every registration refresh re-sends it) changes nothing, so nothing is
  written. ``Updated`` (13.10 release candidates) keeps the current status.
- A resync replaces every contact in its scope (PJSIP, or one technology of peers, or one
  endpoint) with what Asterisk listed. Against the database, ``owned`` mode inserts, rewrites and
  deletes rows; ``asterisk`` mode (Asterisk writes rows through realtime) only sets our status
  columns on rows that exist and reports listed contacts without a row as ``missing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .model import NON_QUALIFIED, REMOVED, UPDATED, Contact, ContactChange
from .parse import ContactStatusEvent, PeerStatusEvent, peer_contact

Scope = Callable[[Contact], bool]


def everything(_contact: Contact) -> bool:
    return True


class ContactTable:
    """Contacts of this instance by id, kept by events and resyncs.

    A per-endpoint index and a Call-ID index are kept in step with every change (``contacts_of``
    is O(contacts of that endpoint) and ``endpoint_of_call`` O(1), never O(all contacts)). ``by_id``
    is read-only for callers: change it through the methods below, which keep the indexes.
    """

    def __init__(self, reg_server: str | None) -> None:
        self.reg_server = reg_server
        self.by_id: dict[str, Contact] = {}
        self._by_endpoint: dict[str, dict[str, Contact]] = {}
        self._by_call_id: dict[str, dict[str, None]] = {}  # Call-ID -> ids of the contacts holding it

    def _put(self, contact: Contact, cid: str | None = None) -> None:
        cid = contact.id if cid is None else cid
        before = self.by_id.get(cid)
        if before is not None:
            if before.endpoint != contact.endpoint:
                self._unindex(cid, before)
            if before.call_id != contact.call_id:
                self._uncall(cid, before)
        self.by_id[cid] = contact
        if contact.endpoint:
            self._by_endpoint.setdefault(contact.endpoint, {})[cid] = contact
        if contact.call_id:
            self._by_call_id.setdefault(contact.call_id, {})[cid] = None

    def _pop(self, cid: str) -> Contact | None:
        contact = self.by_id.pop(cid, None)
        if contact is not None:
            self._unindex(cid, contact)
            self._uncall(cid, contact)
        return contact

    def _uncall(self, cid: str, contact: Contact) -> None:
        if not contact.call_id:
            return
        holders = self._by_call_id.get(contact.call_id)
        if holders is not None:
            holders.pop(cid, None)
            if not holders:
                del self._by_call_id[contact.call_id]

    def endpoint_of_call(self, call_id: str) -> str | None:
        """The endpoint of the contact registered with this SIP Call-ID (the latest stored one
        having an endpoint when several share it), or None."""
        for cid in reversed(self._by_call_id.get(call_id, {})):
            contact = self.by_id.get(cid)
            if contact is not None and contact.endpoint:
                return contact.endpoint
        return None

    def _unindex(self, cid: str, contact: Contact) -> None:
        if not contact.endpoint:
            return
        group = self._by_endpoint.get(contact.endpoint)
        if group is not None:
            group.pop(cid, None)
            if not group:
                del self._by_endpoint[contact.endpoint]

    def contacts_of(self, endpoint: str) -> list[Contact]:
        """The endpoint's contacts, latest registration (greatest expiration_time) first."""
        group = self._by_endpoint.get(endpoint)
        if not group:
            return []
        return sorted(group.values(), key=_latest_first, reverse=True)

    def endpoints(self) -> Iterable[str]:
        """Endpoints with at least one contact (a live view)."""
        return self._by_endpoint.keys()

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, cid: str) -> Contact | None:
        return self.by_id.get(cid)

    def values(self) -> Iterable[Contact]:
        return self.by_id.values()

    def by_endpoint(self) -> dict[str, list[Contact]]:
        """Contacts grouped by endpoint, latest registration (greatest expiration_time) first."""
        return {endpoint: self.contacts_of(endpoint) for endpoint in self._by_endpoint}

    def apply_status(self, event: ContactStatusEvent, now: float) -> ContactChange | None:
        current = self.by_id.get(event.id)
        if event.status == REMOVED:
            if current is None:
                return None
            self._pop(event.id)
            return ContactChange("removed", current, current)
        if current is None:
            status = None if event.status == UPDATED else event.status
            added = Contact(event.id, endpoint=event.endpoint, uri=event.uri, status=status,
                            roundtrip_usec=event.roundtrip_usec, status_updated_at=now, reg_server=self.reg_server)
            self._put(added, event.id)
            return ContactChange("added", added, None)
        if event.status in (UPDATED, current.status):
            return None
        updated = current.replace(status=event.status, roundtrip_usec=event.roundtrip_usec, status_updated_at=now,
                                  endpoint=current.endpoint or event.endpoint)
        self._put(updated, event.id)
        return ContactChange("updated", updated, current)

    def apply_peer(self, event: PeerStatusEvent, now: float) -> ContactChange | None:
        current = self.by_id.get(event.id)
        if event.kind == "unregistered":
            if current is None:
                return None
            self._pop(event.id)
            return ContactChange("removed", current, current)
        if event.kind == "registered":
            fresh = peer_contact(event.tech, event.peer, event.address,
                                 status=current.status if current else NON_QUALIFIED,
                                 roundtrip_usec=current.roundtrip_usec if current else None,
                                 reg_server=self.reg_server,
                                 now=current.status_updated_at if current else now)
            if current is not None and current.same_row(fresh):
                return None
            self._put(fresh, event.id)
            return ContactChange("updated" if current else "added", fresh, current)
        if current is None or event.status == current.status:
            return None  # a static peer, or a repeated qualify result
        updated = current.replace(status=event.status, roundtrip_usec=event.roundtrip_usec, status_updated_at=now)
        self._put(updated, event.id)
        return ContactChange("updated", updated, current)

    def remove(self, cid: str) -> ContactChange | None:
        current = self._pop(cid)
        return ContactChange("removed", current, current) if current is not None else None

    def put_many(self, contacts: Iterable[tuple[str, Contact]]) -> None:
        """Store these (id, contact) pairs as they are (a slice of a resync; see `scope_diff`)."""
        for cid, contact in contacts:
            self._put(contact, cid)

    def replace_scope(self, listed: Mapping[str, Contact], scope: Scope, *,
                      endpoint: str | None = None) -> list[ContactChange]:
        """Make the contacts in ``scope`` exactly ``listed``; returns what changed.

        ``endpoint``: the scope only holds contacts of this endpoint, so only its index entry is
        scanned (O(its contacts)) instead of every contact.
        """
        if endpoint is not None:
            candidates: Iterable[tuple[str, Contact]] = list(self._by_endpoint.get(endpoint, {}).items())
        else:
            candidates = self.by_id.items()
        old = {cid: c for cid, c in candidates if scope(c)}
        if endpoint is None and len(old) == len(self.by_id):
            self.by_id = {}
            self._by_endpoint = {}
            self._by_call_id = {}
        else:
            for cid in old:
                self._pop(cid)
        for cid, contact in listed.items():
            self._put(contact, cid)
        return diff(old, listed)


def _latest_first(contact: Contact) -> tuple[int, str]:
    return (contact.expiration_time or 0, contact.id)


def scope_diff(current: Mapping[str, Contact], listed: Mapping[str, Contact], scope: Scope) -> list[ContactChange]:
    """What making the contacts in ``scope`` exactly ``listed`` changes (pure; a full resync runs it
    off the event loop on a copy of the table, then applies ``listed`` and the removals in slices)."""
    return diff({cid: c for cid, c in current.items() if scope(c)}, listed)


def diff(old: Mapping[str, Contact], new: Mapping[str, Contact]) -> list[ContactChange]:
    changes: list[ContactChange] = []
    for cid, contact in new.items():
        before = old.get(cid)
        if before is None:
            changes.append(ContactChange("added", contact, None))
        elif not before.same_row(contact):
            changes.append(ContactChange("updated", contact, before))
    changes.extend(ContactChange("removed", c, c) for cid, c in old.items() if cid not in new)
    return changes


def stamp(listed: Mapping[str, Contact], previous: Mapping[str, Contact], now: float) -> dict[str, Contact]:
    """Give listed contacts a ``status_updated_at``: the previous one if the status is unchanged."""
    out: dict[str, Contact] = {}
    for cid, contact in listed.items():
        before = previous.get(cid)
        if before is not None and before.status == contact.status and before.status_updated_at is not None:
            out[cid] = contact.replace(status_updated_at=before.status_updated_at)
        else:
            out[cid] = contact.replace(status_updated_at=now)
    return out


@dataclass
class ReconcilePlan:
    """Database changes that make the rows in scope match a listing."""

    added: list[Contact] = field(default_factory=list)
    changed: list[Contact] = field(default_factory=list)
    status_changed: list[Contact] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.status_changed or self.removed)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "updated": len(self.changed) + len(self.status_changed),
                "removed": len(self.removed), "missing": len(self.missing)}


def plan_reconcile(
    rows: Mapping[str, Contact],
    listed: Mapping[str, Contact],
    *,
    owned: bool,
    scope: Scope = everything,
) -> ReconcilePlan:
    """Compare database ``rows`` (this reg_server's, or the listed ids' in asterisk mode) with ``listed``.

    ``owned``: ``added`` rows to insert, ``changed`` rows to rewrite, ``removed`` ids (rows in
    ``scope`` Asterisk no longer has). Not owned: ``status_changed`` rows whose status columns to
    set, ``missing`` listed ids without a row; nothing is inserted or deleted.
    """
    plan = ReconcilePlan()
    for cid, contact in listed.items():
        row = rows.get(cid)
        if row is None:
            (plan.added if owned else plan.missing).append(contact if owned else cid)  # type: ignore[arg-type]
        elif owned and not row.same_row(contact):
            plan.changed.append(contact)
        elif not owned and row.status != contact.status:
            plan.status_changed.append(contact)
        else:
            plan.unchanged += 1
    if owned:
        plan.removed = [cid for cid, row in rows.items() if cid not in listed and scope(row)]
    return plan
