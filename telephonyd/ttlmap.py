"""`TTLMap`: a bounded in-memory map whose entries expire (pure; the clock is injected).

Used by ``call_log`` (the start stage per uniqueid, `telephonyd.calllog.start_cache`) and by
``did_select`` (the selections of calls in progress, read by the hangup's ``call_log``, and the last
good DID per campaign and area code, ``reuse_ttl_s``). Entries expire ``ttl_s`` after they were
written; when full, the oldest is dropped. Insertion-ordered: expiry and eviction both take from the
front (O(1) amortised).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLMap(Generic[K, V]):
    """``put``/``get`` with a time to live of ``ttl_s`` seconds and at most ``max_entries``."""

    def __init__(self, *, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        self._purge(now)
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl_s, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, key: K) -> V | None:
        item = self._entries.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._entries[key]
            self.expired += 1
            return None
        return item[1]

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def _purge(self, now: float) -> None:
        entries = self._entries
        while entries:
            deadline = next(iter(entries.values()))[0]
            if deadline > now:
                return
            entries.popitem(last=False)
            self.expired += 1
