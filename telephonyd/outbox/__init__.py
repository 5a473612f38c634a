"""The durable outbox: every upstream send is first a committed row, then delivered at least once.

- `Outbox.enqueue` / `Outbox.add` write rows (group commit; idempotent on (target, key)).
- `Outbox.run` claims due rows (leases on the database clock; ``FOR UPDATE SKIP LOCKED`` on
  MariaDB so several instances can share one database) and hands them to the `Sender` registered
  for their target; the `Delivery` it answers decides: delivered, retry with backoff, or dead letter.
- `metadata` is the schema to pass to `Store`.
"""

from .model import (
    DEAD,
    DELIVERED,
    IN_FLIGHT,
    PENDING,
    STATES,
    Delivery,
    EnqueueResult,
    OutboxRow,
    Sender,
)
from .schema import metadata
from .service import Outbox

__all__ = [
    "DEAD",
    "DELIVERED",
    "IN_FLIGHT",
    "PENDING",
    "STATES",
    "Delivery",
    "EnqueueResult",
    "Outbox",
    "OutboxRow",
    "Sender",
    "metadata",
]
