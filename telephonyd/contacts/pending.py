"""Changes waiting to be written, coalesced per contact (pure).

Each contact id is in at most one of three sets: a full row to (re)write, a status-only update,
or a delete; a newer change replaces the older one, so a burst of events for one contact becomes
one write of its latest state. ``since`` keeps the arrival time (monotonic) of the oldest event
behind each pending id, for the event-to-row delay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .model import Contact, ContactChange


@dataclass
class Batch:
    rows: list[Contact] = field(default_factory=list)
    statuses: list[Contact] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    since: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows) + len(self.statuses) + len(self.deletes)


class PendingWrites:
    """``owned``: rows, statuses and deletes; otherwise (asterisk mode) statuses only."""

    def __init__(self, *, owned: bool) -> None:
        self.owned = owned
        self.rows: dict[str, Contact] = {}
        self.statuses: dict[str, Contact] = {}
        self.deletes: set[str] = set()
        self.since: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.rows) + len(self.statuses) + len(self.deletes)

    def mark(self, change: ContactChange, since: float) -> None:
        contact = change.contact
        cid = contact.id
        self.since.setdefault(cid, since)
        if not self.owned:
            if change.kind == "removed":
                self.statuses.pop(cid, None)
            else:
                self.statuses[cid] = contact
            return
        if change.kind == "removed":
            self.rows.pop(cid, None)
            self.statuses.pop(cid, None)
            self.deletes.add(cid)
        elif change.kind == "added" or cid in self.rows or not contact.same_details(change.previous or contact):
            self.rows[cid] = contact
            self.statuses.pop(cid, None)
            self.deletes.discard(cid)
        else:
            self.statuses[cid] = contact

    def mark_status(self, contact: Contact, since: float) -> None:
        """Rewrite a row's status columns (asterisk-mode sweep)."""
        if contact.id not in self.rows:
            self.statuses[contact.id] = contact
            self.since.setdefault(contact.id, since)

    def take(self) -> Batch:
        batch = Batch(list(self.rows.values()), list(self.statuses.values()), list(self.deletes), self.since)
        self.rows, self.statuses, self.deletes, self.since = {}, {}, set(), {}
        return batch

    def restore(self, batch: Batch) -> None:
        """Put back a batch that failed, under any newer change made meanwhile."""
        for contact in batch.rows:
            if contact.id not in self.deletes:
                self.rows.setdefault(contact.id, contact)
        for contact in batch.statuses:
            if contact.id not in self.rows and contact.id not in self.deletes:
                self.statuses.setdefault(contact.id, contact)
        for cid in batch.deletes:
            if cid not in self.rows:
                self.deletes.add(cid)
        for cid, t in batch.since.items():
            self.since[cid] = min(t, self.since.get(cid, t))

    def drop(self, covered: Callable[[str], bool]) -> None:
        """Forget pending changes of the ids a resync just wrote."""
        for mapping in (self.rows, self.statuses, self.since):
            for cid in [cid for cid in mapping if covered(cid)]:
                del mapping[cid]
        self.deletes = {cid for cid in self.deletes if not covered(cid)}
