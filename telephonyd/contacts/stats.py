"""Event-to-row delay statistics (pure): the last N samples and their percentiles."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class LatencyStats:
    """Keeps the last ``size`` delays (seconds) between an event's arrival and its row's commit."""

    def __init__(self, size: int = 20_000) -> None:
        self.samples: deque[float] = deque(maxlen=size)

    def add_many(self, delays: Iterable[float]) -> None:
        self.samples.extend(delays)

    def percentile(self, fraction: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
        return ordered[index]

    def summary_ms(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "p50": ms(self.percentile(0.50)),
            "p99": ms(self.percentile(0.99)),
            "max": ms(max(self.samples)) if self.samples else None,
            "samples": len(self.samples),
        }

    def clear(self) -> None:
        self.samples.clear()
