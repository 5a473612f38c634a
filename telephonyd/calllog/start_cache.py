"""A bounded in-memory map uniqueid -> `StartRecord` with a time to live.

The start stage runs on every outbound call and the end stage of the same call usually comes
back to the same process; a miss (another node, a restart, an expired entry) only loses what the
end stage can rebuild from the channel and the ``agi_*`` block, so memory is the right store.
Entries expire ``ttl_s`` after they were written; when full, the oldest entry is dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .outcome import StartRecord


class StartCache:
    """Insertion-ordered, so expiry and eviction both take from the front (O(1) amortised)."""

    def __init__(self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, StartRecord]] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, uniqueid: str, record: StartRecord) -> None:
        now = self._clock()
        self._purge(now)
        self._entries.pop(uniqueid, None)
        self._entries[uniqueid] = (now + self.ttl_s, record)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, uniqueid: str) -> StartRecord | None:
        item = self._entries.get(uniqueid)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._entries[uniqueid]
            self.expired += 1
            return None
        return item[1]

    def discard(self, uniqueid: str) -> None:
        self._entries.pop(uniqueid, None)

    def _purge(self, now: float) -> None:
        entries = self._entries
        while entries:
            _key, (deadline, _record) = next(iter(entries.items()))
            if deadline > now:
                return
            entries.popitem(last=False)
            self.expired += 1
