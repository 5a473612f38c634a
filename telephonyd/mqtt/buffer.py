"""`LatestStateBuffer`: the bounded queue between presence and the MQTT publisher (pure).

Presence pushes without ever waiting (AMI processing must not stall on the broker). While there is
room, every change is kept in order. When a push would pass ``maxsize``, the buffer keeps only the
newest entry of each endpoint (latest state wins; older deltas are dropped and counted). If that still
does not fit (more endpoints than ``maxsize``) it empties itself and raises `resync_needed`: the
publisher then republishes every agent's current state, which is newer than anything dropped.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class LatestStateBuffer:
    """Items are presence events; those with the same ``endpoint`` attribute (None when absent)
    replace each other on overflow."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: deque[Any] = deque()
        self.resync_needed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Any) -> None:
        if self.resync_needed:
            self.dropped += 1
            return
        self._items.append(item)
        if len(self._items) <= self.maxsize:
            return
        latest: dict[str | None, Any] = {}
        for queued in self._items:
            key = getattr(queued, "endpoint", None)
            latest.pop(key, None)
            latest[key] = queued
        self.dropped += len(self._items) - len(latest)
        if len(latest) <= self.maxsize:
            self._items = deque(latest.values())
            return
        self.dropped += len(latest)
        self._items.clear()
        self.resync_needed = True

    def pop(self) -> Any | None:
        """The oldest item, or None when empty."""
        return self._items.popleft() if self._items else None

    def clear(self) -> None:
        """Forget everything queued (a full republish is about to happen)."""
        self._items.clear()
        self.resync_needed = False
