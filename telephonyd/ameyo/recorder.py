"""The store work of one callback: gate, phone-1 state, request log and outbox row in one transaction.

Gate lifecycle (decision): a callback that enqueues a TopS.II request writes its gate ``processing``
in the same transaction as the outbox row; the gate becomes ``processed`` when the outbox reports
the request delivered (or recorded by the dry run) and ``failed`` when it becomes a dead letter. A
phone 1 waiting for phone 2 writes ``waiting_phone2``; the phone-2 callback (or the expiry of the
phone-1 state) moves it to ``processing``. The outbox key (see `routing`) is a second guard: a
callback that passes an expired gate cannot enqueue the same logical request twice.

Phone-1 state expires on read: a phone-2 callback that finds it older than ``phone1_state_ttl_s``
sends it as its own one-phone createNotAnswer (``send_phone1_on_expiry``) and proceeds as if there
were none; the sweeper does the same for phone 2s that never come. Phone-1 state is taken by
deleting it (`phone1.Phone1States.pop`), so two callbacks or instances never both use or send it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any, Protocol

import sqlalchemy as sa

from ..logs import log_context
from ..store import Store
from . import requestlog
from .batch import Transaction
from .gate import Claim, Gate, GateTTLs
from .phone1 import Phone1States
from .routing import CallbackRejected, Route, TopsRequest
from .schema import FAILED, PROCESSED, PROCESSING, WAITING_PHONE2

log = logging.getLogger(__name__)


class OutboxLike(Protocol):
    """The outbox calls this edge uses (``telephonyd.outbox.Outbox`` provides them)."""

    def add(self, conn: sa.Connection, target: str, key: str, payload: dict[str, Any]) -> bool: ...

    def notify(self) -> None: ...


@dataclass(frozen=True)
class Settings:
    ttls: GateTTLs
    phone1_ttl_s: float
    send_phone1_on_expiry: bool
    dry_run: bool


@dataclass(frozen=True)
class Pending:
    """A callback ready to record: a route, or the rejection to keep in the audit log."""

    request_id: str
    path: str
    query: dict[str, str]
    route: Route | None = None
    rejection: CallbackRejected | None = None
    channel: str = "general"


@dataclass(frozen=True)
class Recorded:
    outcome: str  # rejected, skipped, duplicate, waiting_phone2, queued
    detail: dict[str, Any]


class CallbackRecorder:
    """Builds the transaction bodies; ``settings`` may be replaced on reload."""

    def __init__(self, store: Store, outbox: OutboxLike, *, target: str, node_id: str, settings: Settings) -> None:
        self.store = store
        self.outbox = outbox
        self.target = target
        self.node_id = node_id
        self.settings = settings
        self.gate = Gate(store)
        self.log = requestlog.RequestLog(store)
        self.phone1 = Phone1States(store)

    # -- one callback ----------------------------------------------------------------------------

    def prepare(self, tx: Transaction, items: list[Pending]) -> None:
        """Claim the gates of every routed callback of the batch that are new, in bulk."""
        claims = [self._claim_params(item) for item in items if item.route is not None]
        tx.memo["gates_won"] = self.gate.insert_many(tx.conn, claims)
        tx.memo["gates_tried"] = {c["key"] for c in claims}

    @staticmethod
    def _claim_params(item: Pending, route: Route | None = None) -> dict[str, str]:
        route = route or item.route
        assert route is not None
        state = WAITING_PHONE2 if route.flow == "phone1_wait" else PROCESSING
        return {"key": route.gate_key, "new_state": state, "request_id": item.request_id, "flow": route.flow}

    def record(self, tx: Transaction, item: Pending) -> Recorded:
        """Record ``item`` in ``tx`` (runs in the writer task: the request_id is set here so the
        outbox row and every log line carry it)."""
        with log_context(request_id=item.request_id):
            return self._record(tx, item)

    def _record(self, tx: Transaction, item: Pending) -> Recorded:
        if item.route is None:
            assert item.rejection is not None
            self._log(tx, item, http_status=400, outcome="rejected", error=item.rejection.message,
                      error_field=item.rejection.field)
            return Recorded("rejected", {})
        route = routed = item.route
        if route.phone2_alt is not None and route.state_key is not None and self.phone1.stored(tx, route.state_key):
            # Phone-2 inference without the dial index: a phone 1 of this call is waiting.
            route = route.phone2_alt
            item = replace(item, route=route)
        if item.request_id in tx.memo.get("gates_won", ()):
            claim = Claim(True)
            if route is not routed and routed.flow == "phone1_wait":  # won as a phone 1 in `prepare`
                self.gate.set_state_later(tx, route.gate_key, PROCESSING, only_from=WAITING_PHONE2)
        else:
            params = self._claim_params(item, route)
            claim = self.gate.claim(
                tx.conn, route.gate_key, state=params["new_state"], request_id=item.request_id, flow=route.flow,
                phone2=route.phone2, ttls=self.settings.ttls, exists=route.gate_key in tx.memo.get("gates_tried", ()),
            )
        decision = dict(route.decision)
        if not claim.claimed:
            decision.update(skip="duplicate", gate_state=claim.state)
            self._log(tx, item, outcome="skipped", decision=decision)
            return Recorded("skipped", {"gate_state": claim.state})
        if route.flow == "phone1_wait":
            return self._store_phone1(tx, item, route, decision)
        phone1_status = None
        if route.phone1_field is not None and route.state_key is not None:
            phone1_status, decision["phone1_state"] = self._take_phone1(tx, route, item.request_id)
        elif route.clears_phone1 and route.state_key is not None:
            # Connected on phone 1 after all: a stored phone-1 failure is superseded, never sent later.
            _, decision["phone1_state"] = self._take_phone1(tx, route, item.request_id, mark="superseded")
        request = route.complete(phone1_status)
        decision.update({k: v for k, v in request.fields.items() if k.startswith("errorInfo")})
        if self.settings.dry_run:
            decision["dry_run"] = True
        payload = self._payload(request, item.request_id, [route.gate_key])
        added = self.outbox.add(tx.conn, self.target, request.key, payload)
        outcome = "queued" if added else "duplicate"
        if not added:
            decision["skip"] = "outbox_duplicate"
        self._log(tx, item, outcome=outcome, decision=decision, api=request.api, outbox_key=request.key,
                  payload=request.body)
        return Recorded(outcome, {"api": request.api, "outbox_key": request.key})

    def _store_phone1(self, tx: Transaction, item: Pending, route: Route, decision: dict[str, Any]) -> Recorded:
        assert route.state_key is not None and route.expiry_request is not None
        if self.phone1.insert(tx, route, item.request_id, requestlog.dumps(route.expiry_request.body) or ""):
            self._log(tx, item, outcome="waiting_phone2", decision=decision)
            return Recorded("waiting_phone2", {})
        # Phone 1 of this call is already stored: this is a repeat. An expired one is sent now.
        expired = self.phone1.pop(tx, route.state_key, ttl_s=self.settings.phone1_ttl_s, only_expired=True)
        if expired is not None:
            self._send_expired(tx, expired)
        decision.update(skip="phone1_already_stored")
        self._log(tx, item, outcome="skipped", decision=decision)
        return Recorded("skipped", {"phone1": "already_stored"})

    def _take_phone1(self, tx: Transaction, route: Route, request_id: str,
                     mark: str = "combined") -> tuple[str | None, str]:
        """(phone-1 status or None, 'used'|'expired'|'none'), consuming the stored state; the phone-1
        row of the request log is marked ``mark``."""
        assert route.state_key is not None
        row = self.phone1.pop(tx, route.state_key, ttl_s=self.settings.phone1_ttl_s, only_expired=False)
        if row is None:
            return None, "none"
        if row["expired"]:
            self._send_expired(tx, row)
            return None, "expired"
        if row["gate_key"] != route.gate_key:  # same key: this callback's claim already moved it
            self.gate.set_state_later(tx, row["gate_key"], PROCESSING, only_from=WAITING_PHONE2)
        self.log.mark(tx, row["request_id"], mark, request_id)
        return row["status"], "used" if mark == "combined" else mark

    # -- phone-1 expiry --------------------------------------------------------------------------

    async def expired_keys(self, limit: int = 100) -> list[str]:
        """Keys of phone-1 states past ``phone1_state_ttl_s`` (database clock)."""
        return await self.phone1.expired_keys(self.settings.phone1_ttl_s, limit)

    def expire_one(self, tx: Transaction, state_key: str) -> bool:
        """Expire ``state_key`` if it is still stored and expired; True when this call did it."""
        row = self.phone1.pop(tx, state_key, ttl_s=self.settings.phone1_ttl_s, only_expired=True)
        if row is None:
            return False
        self._send_expired(tx, row)
        return True

    def _send_expired(self, tx: Transaction, row: dict[str, Any]) -> None:
        """Phone 1 alone as a one-phone createNotAnswer (or dropped without ``send_phone1_on_expiry``)."""
        request_id = requestlog.new_request_id()
        body = json.loads(row["expiry_body"])
        request = TopsRequest("createNotAnswer", row["expiry_key"], body)
        decision = {"flow": "phone1_expired", "status": row["status"], "errorInfo1": row["status"],
                    "phone1_request_id": row["request_id"]}
        common = {"request_id": request_id, "node_id": self.node_id, "channel": "not_answer",
                  "flow": "phone1_expired", "call_id": row["call_id"], "customer_id": row["customer_id"],
                  "http_status": 0, "related_request_id": row["request_id"]}
        with log_context(request_id=request_id):
            if not self.settings.send_phone1_on_expiry:
                self.gate.set_state_later(tx, row["gate_key"], PROCESSED, only_from=WAITING_PHONE2)
                self.log.insert(tx, outcome="discarded", decision=decision, **common)
                log.warning("phone-1 state expired and discarded",
                            extra={"phone1_request_id": row["request_id"], "call_id": row["call_id"]})
            else:
                self.gate.set_state_later(tx, row["gate_key"], PROCESSING, only_from=WAITING_PHONE2)
                payload = self._payload(request, request_id, [row["gate_key"]])
                added = self.outbox.add(tx.conn, self.target, request.key, payload)
                if not added:
                    decision["skip"] = "outbox_duplicate"
                self.log.insert(tx, outcome="queued" if added else "duplicate", decision=decision, api=request.api,
                                outbox_key=request.key, payload=body, **common)
                log.info("phone-1 state expired, sending phone 1 alone",
                         extra={"phone1_request_id": row["request_id"], "call_id": row["call_id"]})
        self.log.mark(tx, row["request_id"], "expired", request_id)

    # -- upstream results ------------------------------------------------------------------------

    def record_result(self, tx: Transaction, payload: dict[str, Any], outcome: str, **reply: Any) -> None:
        """Note one delivery attempt on the request log row and move the gates on a final outcome."""
        request_id = payload.get("request_id")
        if request_id:
            self.log.note_result(tx, request_id, outcome, **reply)
        final = {"delivered": PROCESSED, "dry_run": PROCESSED, "dead": FAILED}.get(outcome)
        if final is not None:
            for key in payload.get("gates") or []:
                self.gate.set_state_later(tx, key, final, only_from=PROCESSING)

    # -- helpers ---------------------------------------------------------------------------------

    def _payload(self, request: TopsRequest, request_id: str, gate_keys: list[str]) -> dict[str, Any]:
        """The outbox row's payload; `telephonyd.upstream.tops` reads ``api`` and ``body``."""
        return {"api": request.api, "body": request.body, "request_id": request_id, "gates": gate_keys}

    def _log(self, tx: Transaction, item: Pending, *, http_status: int = 200, outcome: str, **values: Any) -> None:
        route = item.route
        call_id = route.call_id if route else item.query.get("unique_id") or item.query.get("callId")
        customer_id = route.customer_id if route else item.query.get("customerId")
        self.log.insert(
            tx, request_id=item.request_id, node_id=self.node_id, path=item.path[:64],
            channel=route.channel if route else item.channel, flow=route.flow if route else None,
            call_id=(call_id or "")[:64] or None, customer_id=(customer_id or "")[:64] or None,
            http_status=http_status, query=item.query, outcome=outcome, **values,
        )
