"""Capped exponential backoff with jitter (pure functions; pass your own `random.Random`): the one
home of every retry delay in telephonyd.

- `full_jitter`: stateless, from the attempt number alone (used per row: the row stores only its
  attempt count). Uniform in ``[0, min(cap, base * 2**(attempt-1))]``, floored at ``base / 2``
  so a failing peer is never retried in a hot loop.
- `decorrelated_jitter`: from the previous delay (used by loops that keep their own state, such
  as the dispatcher waiting out a store outage). Uniform in ``[base, min(cap, previous * 3)]``.
- `equal_jitter`: from the attempt number, half fixed and half random (used by the reconnect and
  retry loops of long-running components: AMI, MQTT, the store at start, the VICIdial poll, the
  Ameyo housekeeping, the ps_contacts writes). Uniform in ``[ceiling / 2, ceiling]``.
- `retry_delay`: the delay of a row's next attempt, honouring a peer's Retry-After as a floor.
"""

from __future__ import annotations

import random

#: Longest Retry-After honoured; a peer asking for more is retried after this.
RETRY_AFTER_MAX_S = 86400.0


def exponential_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """``min(cap, base * 2**(attempt-1))`` for ``attempt >= 1`` (attempt 0 counts as 1)."""
    exponent = max(0, attempt - 1)
    if exponent >= 64:
        return cap_s
    return min(cap_s, base_s * (2.0**exponent))


def full_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """A random delay for the ``attempt``-th retry (1-based), within ``[min(base/2, cap), ceiling]``."""
    ceiling = exponential_ceiling(attempt, base_s, cap_s)
    floor = min(base_s / 2.0, ceiling)
    return rng.uniform(floor, ceiling)


def equal_jitter(attempt: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """A random delay for the ``attempt``-th retry (1-based) within ``[ceiling / 2, ceiling]``,
    ``ceiling = min(cap, base * 2**(attempt-1))``: never a hot loop, never all peers at once.
    ``rng`` None: the module's shared generator."""
    ceiling = exponential_ceiling(attempt, base_s, cap_s)
    return ceiling / 2 + (rng or random).uniform(0.0, ceiling / 2)


def decorrelated_jitter(previous_s: float | None, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The next delay after ``previous_s`` (None: first wait), within ``[min(base, cap), cap]``."""
    low = min(base_s, cap_s)
    if previous_s is None:
        return low
    high = min(cap_s, max(low, previous_s * 3.0))
    return rng.uniform(low, high)


def retry_delay(
    attempt: int,
    base_s: float,
    cap_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float:
    """Seconds until a row's next attempt after its ``attempt``-th failure.

    With ``retry_after_s`` (from the peer's Retry-After) the delay is never shorter than it
    (bounded by `RETRY_AFTER_MAX_S`); a little jitter (up to ``base``) is added on top so rows
    told to wait the same time do not all come back in the same instant.
    """
    delay = full_jitter(attempt, base_s, cap_s, rng)
    if retry_after_s is not None and retry_after_s > 0:
        floor = min(retry_after_s, RETRY_AFTER_MAX_S)
        delay = max(delay, floor + rng.uniform(0.0, base_s))
    return delay
