"""Clients of the upstream APIs, as outbox senders.

- `DIDOptimizerSender` (``did_optimizer.py``): call outcomes to the DID Optimizer.
- ``replies.py``: judging HTTP replies (status, Retry-After, non-JSON bodies) into a `Delivery`.
- ``transport.py``: one bounded HTTP exchange over the shared `aiohttp.ClientSession`.

Senders speak the outbox contract through ``telephonyd.outbox.model`` (value types only).
"""

from .did_optimizer import DID_OPTIMIZER_TARGET, DIDOptimizerSender, classify_reply
from .replies import (
    classify_status,
    excerpt,
    failure_text,
    json_object,
    retry_after_seconds,
)
from .transport import HTTPReply, exchange

__all__ = [
    "DID_OPTIMIZER_TARGET",
    "DIDOptimizerSender",
    "HTTPReply",
    "classify_reply",
    "classify_status",
    "excerpt",
    "exchange",
    "failure_text",
    "json_object",
    "retry_after_seconds",
]
