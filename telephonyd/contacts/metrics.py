"""`ContactsSection`: ``telephonyd_contacts*`` of one `ContactsSync`, read from its typed state at
scrape time (the sync builds it, `ContactsSync.collectors`; its ``health()`` is for ``/status``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, counter, gauge
from .model import Contact


class ContactsSection(Section):
    """``contacts()``: the contacts held; ``pending_writes()``: changes not yet written;
    ``counts``: the sync's own counters (``rows_written``, ``write_failures``, ``resyncs``: a
    missing one fails the section loudly rather than export 0)."""

    def __init__(self, *, contacts: Callable[[], Iterable[Contact]], pending_writes: Callable[[], int],
                 counts: Mapping[str, int]) -> None:
        self.contacts = contacts
        self.pending_writes = pending_writes
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        by_status: dict[str, int] = {}
        for contact in self.contacts():
            status = contact.status or "none"
            by_status[status] = by_status.get(status, 0) + 1
        held = GaugeMetricFamily("telephonyd_contacts", "Contacts held, by ContactStatus", labels=["status"])
        for status, n in sorted(by_status.items()):
            held.add_metric([status], n)
        yield held
        counts = self.counts
        yield gauge("telephonyd_contacts_pending_writes", "ps_contacts changes not yet written", self.pending_writes())
        yield counter("telephonyd_contacts_rows_written", "ps_contacts rows written", counts["rows_written"])
        yield counter("telephonyd_contacts_write_failures", "ps_contacts write batches that failed",
                      counts["write_failures"])
        yield counter("telephonyd_contacts_resyncs", "Full ps_contacts resyncs", counts["resyncs"])
