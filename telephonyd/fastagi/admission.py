"""Which FastAGI connections get a session: caps in total and per client, idle sessions evicted first.

A session is *idle* from connect until its ``agi_*`` block is complete; Asterisk sends the block at
once, so a connection that stays idle is a stalled or hostile client. When a cap is reached, the
oldest idle session (of the same client for the per-client cap, of any client for the total) is
closed to make room for the new connection, which is refused only when no idle session is left.
So a flood of idle connections from an allowed address cannot keep Asterisk's real sessions out:
a real session is evicted only if more connections than the cap arrive between its connect and the
reading of its block, which the small accept batch (`descriptors.ACCEPT_BATCH`) makes impossible.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

#: Refusal reasons (labels of ``telephonyd_agi_connections_refused_total``).
OVERLOAD = "overload"
CLIENT_CAP = "client_cap"


class Admission:
    """Session slots by client address (pure bookkeeping, no I/O).

    ``admit(key, host, evict)`` takes a slot for a new connection, evicting idle sessions as
    needed (``evict`` is each session's own close callback, called at most once), and returns the
    refusal reason or None. ``active(key)`` marks a session's block complete (it can no longer be
    evicted); ``release(key)`` frees its slot; ``evicted(key)`` says whether it was evicted.
    """

    def __init__(self, max_sessions: int, max_per_client: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self.evictions = 0
        self._host: dict[Hashable, str] = {}
        self._per_client: dict[str, int] = {}
        self._idle: dict[Hashable, Callable[[], None]] = {}  # insertion order: oldest first
        self._idle_by_client: dict[str, dict[Hashable, Callable[[], None]]] = {}
        self._evicted: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._host)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def admit(self, key: Hashable, host: str, evict: Callable[[], None]) -> str | None:
        if self._per_client.get(host, 0) >= self.max_per_client:
            oldest = next(iter(self._idle_by_client.get(host, {})), None)
            if oldest is None:
                return CLIENT_CAP
            self._evict(oldest)
        if len(self._host) >= self.max_sessions:
            oldest = next(iter(self._idle), None)
            if oldest is None:
                return OVERLOAD
            self._evict(oldest)
        self._host[key] = host
        self._per_client[host] = self._per_client.get(host, 0) + 1
        self._idle[key] = evict
        self._idle_by_client.setdefault(host, {})[key] = evict
        return None

    def active(self, key: Hashable) -> None:
        host = self._host.get(key)
        if host is not None:
            self._drop_idle(key, host)

    def release(self, key: Hashable) -> None:
        self._evicted.discard(key)
        host = self._host.pop(key, None)
        if host is None:
            return
        self._drop_idle(key, host)
        held = self._per_client.get(host, 0) - 1
        if held > 0:
            self._per_client[host] = held
        else:
            self._per_client.pop(host, None)

    def evicted(self, key: Hashable) -> bool:
        return key in self._evicted

    def _evict(self, key: Hashable) -> None:
        evict = self._idle.get(key)
        self.release(key)  # the slot is free now, not when the evicted task gets to run
        self._evicted.add(key)
        self.evictions += 1
        if evict is not None:
            evict()

    def _drop_idle(self, key: Hashable, host: str) -> None:
        self._idle.pop(key, None)
        by_client = self._idle_by_client.get(host)
        if by_client is not None:
            by_client.pop(key, None)
            if not by_client:
                del self._idle_by_client[host]
