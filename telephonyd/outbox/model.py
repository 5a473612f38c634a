"""Value types of the outbox contract: rows handed to senders, what a sender answers, enqueue results.

Pure data, no I/O: senders (``telephonyd.upstream``) import only this module to speak the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

PENDING = "pending"
IN_FLIGHT = "in_flight"
DELIVERED = "delivered"
DEAD = "dead"
STATES = (PENDING, IN_FLIGHT, DELIVERED, DEAD)

Outcome = Literal["delivered", "retry", "dead"]
OUTCOMES: tuple[str, ...] = ("delivered", "retry", "dead")

#: Longest idempotency key (utf8mb4 unique index limit) and target name stored.
MAX_KEY_CHARS = 191
MAX_TARGET_CHARS = 64
#: Largest serialized payload accepted by `Outbox.enqueue` / `Outbox.add`.
MAX_PAYLOAD_BYTES = 256 * 1024


class EnqueueResult(NamedTuple):
    """``id`` of the row holding (target, key); ``created`` is False when it already existed."""

    id: int
    created: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One claimed row, as a sender sees it.

    ``attempts`` counts the attempts already finished (0 on the first send); times are epoch
    seconds of the database clock. ``context`` holds the log fields (uniqueid, request_id, ...)
    that were set when the row was enqueued.
    """

    id: int
    target: str
    key: str
    payload: dict[str, Any]
    attempts: int
    created_at: float
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """``<target>:<key>``: the same for every attempt of this row (a re-send after a lost claim
        included), so an upstream can recognise a repeat. Senders send it as ``Idempotency-Key``."""
        return f"{self.target}:{self.key}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a sender concluded about one attempt.

    - ``delivered``: the peer confirmed it; the row is never sent again.
    - ``retry``: try later (backoff; ``retry_after_s`` is a floor the peer asked for).
    - ``dead``: the peer refused it for good; the row becomes a dead letter with ``error``.

    ``unhealthy`` marks the whole target unhealthy until a later delivery succeeds (for example
    a rejected API key). ``status`` is the HTTP status when there was one, ``response`` a short
    excerpt of the peer's answer.
    """

    outcome: Outcome
    error: str | None = None
    status: int | None = None
    retry_after_s: float | None = None
    unhealthy: bool = False
    response: str | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown delivery outcome {self.outcome!r}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must not be negative")


class Sender(Protocol):
    """Delivers rows of one target. Must not raise for peer failures; answer a `Delivery`.

    Anything it raises anyway counts as ``retry`` with the exception's text.
    """

    async def send(self, row: OutboxRow) -> Delivery: ...
