"""Retry schedule of outbox rows: capped exponential growth, jitter, Retry-After as a floor."""

from __future__ import annotations

import random
import statistics

from hypothesis import given
from hypothesis import strategies as st

from telephonyd.backoff import (
    RETRY_AFTER_MAX_S,
    decorrelated_jitter,
    equal_jitter,
    exponential_ceiling,
    full_jitter,
    retry_delay,
)

bases = st.floats(min_value=0.01, max_value=60.0)
caps = st.floats(min_value=0.01, max_value=3600.0)


def test_ceiling_doubles_then_caps() -> None:
    assert [exponential_ceiling(n, 1.0, 300.0) for n in range(1, 11)] == [
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0,
    ]
    assert exponential_ceiling(10_000, 1.0, 300.0) == 300.0  # no overflow for huge attempt counts


@given(attempt=st.integers(min_value=0, max_value=500), base=bases, cap=caps, seed=st.integers())
def test_full_jitter_stays_within_floor_and_ceiling(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = full_jitter(attempt, base, cap, random.Random(seed))
    ceiling = exponential_ceiling(attempt, base, cap)
    assert min(base / 2, ceiling) <= delay <= ceiling <= cap


def test_full_jitter_spreads_rows_failing_together() -> None:
    rng = random.Random(7)
    delays = [full_jitter(6, 1.0, 300.0, rng) for _ in range(200)]
    assert len({round(d, 6) for d in delays}) > 150
    assert 0.5 <= min(delays) and max(delays) <= 32.0
    # Spread over the whole window, not bunched at one end.
    assert 10.0 < statistics.mean(delays) < 22.0


@given(previous=st.none() | st.floats(min_value=0.0, max_value=10_000.0), base=bases, cap=caps, seed=st.integers())
def test_decorrelated_jitter_bounds(previous: float | None, base: float, cap: float, seed: int) -> None:
    delay = decorrelated_jitter(previous, base, cap, random.Random(seed))
    assert min(base, cap) <= delay <= cap
    if previous is not None:
        assert delay <= max(min(base, cap), previous * 3)


def test_decorrelated_jitter_grows_towards_the_cap() -> None:
    rng = random.Random(1)
    delay = None
    seen = []
    for _ in range(30):
        delay = decorrelated_jitter(delay, 1.0, 30.0, rng)
        seen.append(delay)
    assert seen[0] == 1.0
    assert max(seen) > 15.0
    assert all(1.0 <= d <= 30.0 for d in seen)


@given(attempt=st.integers(min_value=1, max_value=50), retry_after=st.floats(min_value=0.001, max_value=10**7), seed=st.integers())
def test_retry_after_is_a_floor(attempt: int, retry_after: float, seed: int) -> None:
    delay = retry_delay(attempt, 1.0, 300.0, random.Random(seed), retry_after)
    floor = min(retry_after, RETRY_AFTER_MAX_S)
    assert delay >= floor
    assert delay <= max(300.0, floor + 1.0)


def test_retry_after_shorter_than_backoff_does_not_shorten_it() -> None:
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert retry_delay(8, 1.0, 300.0, rng_a, 0.5) == full_jitter(8, 1.0, 300.0, rng_b)


def test_without_retry_after_it_is_full_jitter() -> None:
    assert retry_delay(4, 2.0, 60.0, random.Random(5)) == full_jitter(4, 2.0, 60.0, random.Random(5))


@given(attempt=st.integers(min_value=0, max_value=200), base=bases, cap=caps, seed=st.integers(0, 2**32))
def test_equal_jitter_stays_between_half_the_ceiling_and_the_ceiling(attempt: int, base: float, cap: float,
                                                                     seed: int) -> None:
    ceiling = exponential_ceiling(attempt, base, cap)
    assert ceiling / 2 <= equal_jitter(attempt, base, cap, random.Random(seed)) <= ceiling


def test_equal_jitter_grows_with_the_attempts_and_spreads() -> None:
    rng = random.Random(7)
    firsts = [equal_jitter(1, 1.0, 30.0, rng) for _ in range(200)]
    sixths = [equal_jitter(6, 1.0, 30.0, rng) for _ in range(200)]
    assert max(firsts) <= 1.0 < 15.0 <= min(sixths)
    assert statistics.pstdev(firsts) > 0.05
