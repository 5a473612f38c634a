"""`CircuitBreaker`: stop asking an API that keeps failing, probe it again after a cooldown (no I/O;
it logs when it opens and closes).

States: ``closed`` (every request goes), ``open`` (none goes; after ``cooldown_s`` the next request
becomes the one probe), ``half_open`` (the probe is out; others do not go). The probe's success
closes the breaker; its failure opens it for another cooldown. ``failures`` failures in a row open
a closed breaker; any success resets the count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"
#: Gauge values of the states.
STATE_VALUES: Final = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    """``allow()`` before a request, then ``record(ok)`` with its outcome. ``clock``: monotonic s."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be >= 1 and cooldown_s > 0")
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.state = CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.opened_total = 0
        self._probe_out = False

    def allow(self) -> bool:
        """True when a request may go now (in ``open`` past the cooldown: the probe, once)."""
        if self.state == CLOSED:
            return True
        if self.probe_due():
            self.state = HALF_OPEN
            self._probe_out = True
            return True
        return False

    def probe_due(self) -> bool:
        """True when open and the cooldown is over: the next `allow` sends the probe."""
        return self.state == OPEN and self.opened_at is not None and self._clock() - self.opened_at >= self.cooldown_s

    def record(self, ok: bool) -> None:
        """The outcome of a request that `allow` let through."""
        if ok:
            if self.state != CLOSED:
                log.warning("DID Optimizer circuit breaker closed: the API answered again")
            self.state = CLOSED
            self.consecutive_failures = 0
            self.opened_at = None
            self._probe_out = False
            return
        self.consecutive_failures += 1
        if self.state == HALF_OPEN or (self.state == CLOSED and self.consecutive_failures >= self.failures):
            self._open()

    def release(self) -> None:
        """A request `allow` let through ended with no verdict (cancelled): free the probe slot."""
        if self.state == HALF_OPEN and self._probe_out:
            self._probe_out = False
            self.state = OPEN  # the next request after the cooldown probes again

    def _open(self) -> None:
        if self.state != OPEN:
            self.opened_total += 1
            log.warning("DID Optimizer circuit breaker open: calls keep their caller id without asking",
                        extra={"failures": self.consecutive_failures, "cooldown_s": self.cooldown_s})  # fmt: skip
        self.state = OPEN
        self.opened_at = self._clock()
        self._probe_out = False

    def snapshot(self) -> dict[str, object]:
        """For ``/status``: state, failures in a row, seconds since it opened."""
        since = None if self.opened_at is None else round(self._clock() - self.opened_at, 1)
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "opened_for_s": since,
            "opened_total": self.opened_total,
        }
