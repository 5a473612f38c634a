"""`LoopLagMonitor`: how late the event loop runs a timer, for ``/metrics`` and the alert rules.

Every ``interval_s`` it sleeps and measures how much later than asked it woke up: that delay is time
the loop spent on other work without yielding (a long synchronous parse, a blocking call, the
garbage collector), during which no AGI command, AMI event or HTTP request was served.
``telephonyd_event_loop_lag_seconds`` is the largest delay of the last ``window_s``;
``telephonyd_event_loop_lag_max_seconds`` the largest since start. Component shape: start, run,
stop, health.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from prometheus_client import Gauge


class LoopLagMonitor:
    def __init__(self, interval_s: float = 0.25, window_s: float = 30.0) -> None:
        self.interval_s = interval_s
        self._samples: deque[float] = deque(maxlen=max(1, int(window_s / interval_s)))
        self.max_lag_s = 0.0
        self._stopped = asyncio.Event()
        self.gauge = Gauge("telephonyd_event_loop_lag_seconds", "Largest event-loop delay (s) in the last "
                           f"{window_s:g} s: how late a {interval_s:g} s timer fired", registry=None)
        self.gauge.set_function(self.recent_lag_s)
        self.max_gauge = Gauge("telephonyd_event_loop_lag_max_seconds", "Largest event-loop delay (s) since start",
                               registry=None)
        self.max_gauge.set_function(lambda: self.max_lag_s)

    def recent_lag_s(self) -> float:
        return max(self._samples, default=0.0)

    def collectors(self) -> list[Any]:
        return [self.gauge, self.max_gauge]

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        while not self._stopped.is_set():
            asked = time.monotonic()
            try:
                await asyncio.wait_for(self._stopped.wait(), self.interval_s)
                return
            except TimeoutError:
                pass
            lag = max(0.0, time.monotonic() - asked - self.interval_s)
            self._samples.append(lag)
            self.max_lag_s = max(self.max_lag_s, lag)

    async def stop(self, timeout: float) -> None:
        self._stopped.set()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "state": "running" if not self._stopped.is_set() else "stopped",
                "lag_s": round(self.recent_lag_s(), 4), "max_lag_s": round(self.max_lag_s, 4)}
