"""`AmeyoSection`: ``telephonyd_ameyo_*`` and ``telephonyd_tops_unhealthy`` of one `AmeyoService`,
read from its counters at scrape time (the service builds it, `AmeyoService.collectors`; its
``health()`` is for ``/status`` only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, counter, gauge

#: The count of phone-1 states expired without a phone-2 callback: kept with the callback results
#: by the service, exported apart (it is not a callback).
PHONE1_EXPIRED = "phone1_expired"


class AmeyoSection(Section):
    """``counts``: callbacks by result (and `PHONE1_EXPIRED`); ``fallbacks``: values forwarded with
    a stand-in, by kind; ``backlog()``: callbacks waiting for their group commit;
    ``tops_unhealthy()``: TopS.II refused authentication or licence."""

    def __init__(self, *, counts: Mapping[str, int], fallbacks: Mapping[str, int], backlog: Callable[[], int],
                 tops_unhealthy: Callable[[], bool]) -> None:
        self.counts = counts
        self.fallbacks = fallbacks
        self.backlog = backlog
        self.tops_unhealthy = tops_unhealthy

    def collect(self) -> Iterator[Metric]:
        counts = dict(self.counts)
        expired = counts.pop(PHONE1_EXPIRED, 0)
        callbacks = CounterMetricFamily("telephonyd_ameyo_callbacks", "Ameyo callbacks by result (queued, "
                                        "duplicate, waiting_phone2, skipped, rejected, unauthorized, forbidden, "
                                        "unavailable)", labels=["result"])
        for result, n in sorted(counts.items()):
            callbacks.add_metric([result], n)
        yield callbacks
        yield counter("telephonyd_ameyo_phone1_expired", "Phone-1 states expired without a phone-2 callback", expired)
        fallbacks = CounterMetricFamily("telephonyd_ameyo_fallbacks", "Callback values forwarded with a stand-in "
                                        "(unmapped_hangup_code, time_not_understood)", labels=["kind"])
        for kind, n in sorted(dict(self.fallbacks).items()):
            fallbacks.add_metric([kind], n)
        yield fallbacks
        yield gauge("telephonyd_ameyo_backlog", "Callbacks waiting for their group commit", self.backlog())
        yield gauge("telephonyd_tops_unhealthy", "1 after TopS.II refused authentication or licence",
                    1 if self.tops_unhealthy() else 0)
