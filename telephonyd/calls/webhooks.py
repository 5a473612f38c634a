"""`WebhookSender`: the outbox target kind ``webhook:<name>`` (one sender per configured webhook).

Each outbox row is one call event (payload: the schema-1 document, key: its event id). The request:

    POST <url>
    Content-Type: application/json
    X-Telephonyd-Event: call.answered
    X-Telephonyd-Delivery: <outbox row id>
    Idempotency-Key: <event_id>                 (same on every retry of the row)
    X-Telephonyd-Signature: t=<epoch s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The body is the document as compact JSON (the exact bytes signed). A receiver verifies with
`verify_signature` (or its own copy of it) and should refuse timestamps far from its clock.

Replies: 2xx delivered; 408, 429 (``Retry-After`` honoured) and 5xx retried with the outbox's
backoff; a redirect is retried and marks the target unhealthy; 401 and other 4xx dead-letter the
row. Transport failures (refused, reset, timeout) are retried.

Order per call: a row is sent only once every earlier row of the same webhook and call (same
linkedid, lower outbox id) is delivered or dead. An earlier row being sent right now by this
process is awaited; one still pending answers ``retry`` so the event waits for its predecessor.
When this process finished the row of the previous ``seq`` of the call, everything before it was
finished too (it was checked the same way), so the store is asked only for a call's first event
here (after a restart, or on another instance, rows of an earlier run may still be open).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import aiohttp
import sqlalchemy as sa

from ..errors import UpstreamError
from ..outbox.model import DEAD, DELIVERED, Delivery, OutboxRow
from ..outbox.schema import outbox
from ..upstream.replies import classify_status, excerpt
from ..upstream.transport import exchange
from .settings import WebhookConfig

if TYPE_CHECKING:
    from ..store import Store

SIGNATURE_HEADER = "X-Telephonyd-Signature"
USER_AGENT = "telephonyd-webhooks/1"
#: Rows remembered as finished by this process (their result may not be written yet).
RECENT_FINISHED = 8192


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact request body of a document (compact JSON, UTF-8)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``t=<timestamp>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: float | None = None,
                     tolerance_s: float = 300.0) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance_s`` of ``now`` (epoch s)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def call_of(key: str) -> str:
    """The linkedid part of an event id ``<linkedid>:<kind>:<n>``."""
    return key.split(":", 1)[0]


class WebhookSender:
    """Sends rows of target ``webhook:<name>``. ``store``: the outbox's store (for the order check);
    ``session``: the daemon's shared `aiohttp.ClientSession` (not closed here)."""

    def __init__(self, config: WebhookConfig, session: aiohttp.ClientSession, store: Store) -> None:
        self.config = config
        self.session = session
        self.store = store
        self._secret = config.secret.get_secret_value() if config.secret else None
        self._sending: dict[int, asyncio.Future[bool]] = {}
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._finished_seq: OrderedDict[str, int] = OrderedDict()  # linkedid -> seq finished in order
        t = outbox
        self._earlier = (sa.select(t.c.id).where(
            t.c.target == sa.bindparam("b_target"), t.c.key >= sa.bindparam("b_low"),
            t.c.key < sa.bindparam("b_high"), t.c.id < sa.bindparam("b_id"),
            t.c.state.not_in((DELIVERED, DEAD))).order_by(t.c.id))

    async def send(self, row: OutboxRow) -> Delivery:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sending[row.id] = done  # before any await: a later row of the call sees it
        finished = False
        try:
            waiting = await self._earlier_open(row)
            if waiting:
                return Delivery("retry", error=f"waiting for an earlier event of call {call_of(row.key)} "
                                               f"(outbox row {waiting})")
            delivery = await self._post(row)
            finished = delivery.outcome != "retry"
            return delivery
        finally:
            del self._sending[row.id]
            if finished:
                self._finished[row.id] = None
                while len(self._finished) > RECENT_FINISHED:
                    self._finished.popitem(last=False)
                seq = row.payload.get("seq")
                if isinstance(seq, int):
                    linkedid = call_of(row.key)
                    self._finished_seq[linkedid] = max(seq, self._finished_seq.pop(linkedid, 0))
                    while len(self._finished_seq) > RECENT_FINISHED:
                        self._finished_seq.popitem(last=False)
            done.set_result(finished)

    async def _earlier_open(self, row: OutboxRow) -> int | None:
        """The id of an earlier row of the same call still not delivered (None when there is none)."""
        linkedid = call_of(row.key)
        seq = row.payload.get("seq")
        if isinstance(seq, int) and seq > 1 and self._finished_seq.get(linkedid, 0) >= seq - 1:
            return None
        params = {"b_target": row.target, "b_low": f"{linkedid}:", "b_high": f"{linkedid};", "b_id": row.id}
        async with asyncio.timeout(10.0):
            async with self.store.connect() as conn:
                earlier = [r.id for r in (await conn.execute(self._earlier, params)).all()]
        for row_id in earlier:
            if row_id in self._finished:
                continue
            pending = self._sending.get(row_id)
            if pending is None:
                return row_id
            try:
                async with asyncio.timeout(self.config.timeout_s * 2):
                    if not await asyncio.shield(pending):
                        return row_id
            except TimeoutError:
                return row_id
        return None

    async def _post(self, row: OutboxRow) -> Delivery:
        body = body_of(row.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Telephonyd-Event": str(row.payload.get("event", "")),
            "X-Telephonyd-Delivery": str(row.id),
            "Idempotency-Key": row.key,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, int(time.time()), body)
        try:
            reply = await exchange(self.session, "POST", self.config.url, timeout_s=self.config.timeout_s,
                                   secrets=(self._secret,), data=body, headers=headers)
        except UpstreamError as exc:
            return Delivery("retry", error=str(exc))
        judged = classify_status(reply.status, reply.body, reply.headers.get("Retry-After"), time.time())
        if judged is not None:
            return judged
        return Delivery("delivered", status=reply.status, response=excerpt(reply.body) or None)
