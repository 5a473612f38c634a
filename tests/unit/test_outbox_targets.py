"""Per-target state: unhealthy until a success, pauses on Retry-After and on repeated failures."""

from __future__ import annotations

import random

from telephonyd.outbox import Delivery
from telephonyd.outbox.targets import PAUSE_AFTER_FAILURES, TargetState

RNG = random.Random(0)


def record(ts: TargetState, delivery: Delivery, now: float = 100.0) -> None:
    ts.record(delivery, now, 1.0, 60.0, RNG)


def test_401_marks_unhealthy_until_a_later_success() -> None:
    ts = TargetState(enabled=True)
    record(ts, Delivery("dead", error="HTTP 401: Invalid API key", status=401, unhealthy=True))
    assert ts.unhealthy and ts.last_error == "HTTP 401: Invalid API key" and ts.last_status == 401
    record(ts, Delivery("dead", error="HTTP 400: bad", status=400))
    record(ts, Delivery("retry", error="HTTP 500", status=500))
    assert ts.unhealthy
    record(ts, Delivery("delivered", status=200))
    assert not ts.unhealthy and ts.last_error is None and ts.consecutive_failures == 0


def test_retry_after_pauses_the_whole_target() -> None:
    ts = TargetState(enabled=True)
    record(ts, Delivery("retry", error="HTTP 429", status=429, retry_after_s=30.0), now=100.0)
    assert not ts.available(129.9)
    assert ts.available(130.0)
    assert ts.describe(110.0)["paused_for_s"] == 20.0


def test_repeated_failures_pause_with_growing_backoff() -> None:
    ts = TargetState(enabled=True)
    for _ in range(PAUSE_AFTER_FAILURES - 1):
        record(ts, Delivery("retry", error="connection refused"))
    assert ts.available(100.0)  # a couple of failures do not pause the target
    record(ts, Delivery("retry", error="connection refused"))
    assert not ts.available(100.0)
    first_pause = ts.paused_until - 100.0
    assert 0.5 <= first_pause <= 1.0
    for _ in range(5):
        record(ts, Delivery("retry", error="connection refused"))
    assert ts.paused_until - 100.0 > first_pause
    assert ts.paused_until - 100.0 <= 60.0


def test_a_dead_letter_means_the_peer_answered() -> None:
    ts = TargetState(enabled=True)
    for _ in range(PAUSE_AFTER_FAILURES - 1):
        record(ts, Delivery("retry", error="timeout"))
    record(ts, Delivery("dead", error="HTTP 400", status=400))
    record(ts, Delivery("retry", error="timeout"))
    assert ts.available(100.0)
    assert ts.consecutive_failures == 1


def test_disabled_target_is_never_available() -> None:
    assert not TargetState(enabled=False).available(10**9)
