"""The bounded, expiring start-stage cache."""

from __future__ import annotations

import pytest

from telephonyd.calllog.outcome import StartRecord
from telephonyd.calllog.start_cache import StartCache


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(number: str) -> StartRecord:
    return StartRecord(dialed_number=number, started_at=0.0)


def test_get_returns_what_was_put_until_the_ttl_runs_out() -> None:
    clock = Clock()
    cache = StartCache(ttl_s=10, max_entries=100, clock=clock)
    cache.put("1.1", record("91555"))
    clock.now += 9.9
    assert cache.get("1.1") == record("91555")
    clock.now += 0.1
    assert cache.get("1.1") is None
    assert len(cache) == 0
    assert cache.expired == 1


def test_oldest_entry_is_evicted_when_full() -> None:
    cache = StartCache(ttl_s=100, max_entries=3, clock=Clock())
    for i in range(4):
        cache.put(f"1.{i}", record(str(i)))
    assert cache.get("1.0") is None
    assert [cache.get(f"1.{i}") for i in (1, 2, 3)] == [record("1"), record("2"), record("3")]
    assert len(cache) == 3
    assert cache.evicted == 1


def test_expired_entries_are_purged_on_put_without_a_read() -> None:
    clock = Clock()
    cache = StartCache(ttl_s=5, max_entries=100, clock=clock)
    for i in range(10):
        cache.put(f"1.{i}", record(str(i)))
    clock.now += 6
    cache.put("2.0", record("x"))
    assert len(cache) == 1
    assert cache.expired == 10


def test_put_again_refreshes_the_deadline_and_order() -> None:
    clock = Clock()
    cache = StartCache(ttl_s=10, max_entries=2, clock=clock)
    cache.put("a", record("1"))
    cache.put("b", record("2"))
    clock.now += 5
    cache.put("a", record("3"))  # now the newest
    cache.put("c", record("4"))  # evicts b, not a
    assert cache.get("b") is None
    assert cache.get("a") == record("3")
    clock.now += 9
    assert cache.get("a") == record("3")


def test_discard() -> None:
    cache = StartCache(ttl_s=10, max_entries=10, clock=Clock())
    cache.put("a", record("1"))
    cache.discard("a")
    cache.discard("missing")
    assert cache.get("a") is None


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (-1, 10), (10, 0)])
def test_bad_bounds_are_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError):
        StartCache(ttl_s=ttl, max_entries=size)
