"""Per-target delivery state: enabled, unhealthy, paused after failures (pure; clock passed in).

A target is paused (no new claims) when its peer asks for it (Retry-After) or after
`PAUSE_AFTER_FAILURES` retryable failures in a row, with capped exponential backoff, so an
outage of one peer is probed gently instead of being hit by every pending row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..backoff import RETRY_AFTER_MAX_S, full_jitter
from .model import Delivery

PAUSE_AFTER_FAILURES = 3


@dataclass(slots=True)
class TargetState:
    enabled: bool
    unhealthy: bool = False
    consecutive_failures: int = 0
    paused_until: float = 0.0
    last_error: str | None = None
    last_status: int | None = None

    def available(self, now: float) -> bool:
        """True when rows of this target may be claimed at monotonic time ``now``."""
        return self.enabled and now >= self.paused_until

    def record(self, delivery: Delivery, now: float, base_s: float, cap_s: float, rng: random.Random) -> None:
        """Fold one attempt's outcome in (``now`` monotonic seconds)."""
        self.last_status = delivery.status
        if delivery.outcome == "delivered":
            self.unhealthy = False
            self.consecutive_failures = 0
            self.paused_until = 0.0
            self.last_error = None
            return
        self.last_error = delivery.error
        if delivery.unhealthy:
            self.unhealthy = True
        if delivery.outcome == "dead":
            # The peer answered and judged the row: the transport works.
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        pause = 0.0
        if delivery.retry_after_s:
            pause = min(delivery.retry_after_s, RETRY_AFTER_MAX_S)
        elif self.consecutive_failures >= PAUSE_AFTER_FAILURES:
            pause = full_jitter(self.consecutive_failures - PAUSE_AFTER_FAILURES + 1, base_s, cap_s, rng)
        if pause:
            self.paused_until = max(self.paused_until, now + pause)

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "unhealthy": self.unhealthy,
            "paused_for_s": round(max(0.0, self.paused_until - now), 3),
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_status": self.last_status,
        }
