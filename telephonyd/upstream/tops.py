"""`TopsSender`: delivers outbox rows of target ``tops`` to the TopS.II (FastHelp) predictive-call API.

Wire format (TopS.II Web API): HTTPS POST to
``<base_url>/fasthelp5-server/service/callmanage/predictiveCallApiService/<api>.json``, body
``application/x-www-form-urlencoded`` (UTF-8) with one field ``jsonData=<JSON>`` whose single root
key names the API, header ``X-FastHelp-API-Key``. Once reached, TopS.II answers HTTP 200 and tells
success by the body's ``result`` (``success`` | ``fail``) with ``messageCode`` / ``subMessageCode``.

Outbox payload read here: ``{"api": "createCallStart"|"createCallEnd"|"createNotAnswer",
"body": {<root key>: {...}}, ...}``; every other key is passed back untouched to ``on_result``.

Reply classes (`classify`): success -> delivered; ``result:"fail"`` is a failure, never a success:
WTYP0030 (authentication) and WTYP0020 (licence) -> dead letter and the target unhealthy; ETYP0040
(application error) -> retry; WPRDEXTC3201 (call does not exist: a CallEnd may overtake its
CallStart) -> retry ``call_missing_retries`` times, then dead letter; any other logical error -> dead
letter. Timeouts, transport errors and a 200 whose body is not a JSON object -> retry; other HTTP
statuses follow the shared rules of `telephonyd.upstream.replies` (408, 429, 5xx retry; 401 dead
letter and unhealthy; 3xx retry and unhealthy; other 4xx dead letter).

With ``tops.real_send`` false (dry run) nothing is sent: the row counts as delivered and
``on_result`` sees the outcome ``dry_run``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from collections.abc import Awaitable
from typing import Any, Protocol
from urllib.parse import quote_plus

import aiohttp
import yarl
from aiohttp.payload import BytesPayload

from ..config import Config, TopsConfig
from ..errors import UpstreamError
from ..outbox.model import Delivery, OutboxRow
from .replies import classify_status, excerpt, json_object
from .transport import exchange, idempotency_header

log = logging.getLogger(__name__)

API_PATH = "/fasthelp5-server/service/callmanage/predictiveCallApiService/"
ROOT_KEYS = {
    "createCallStart": "predictiveCallCreateCallStart",
    "createCallEnd": "predictiveCallCreateCallEnd",
    "createNotAnswer": "predictiveCallCreateNotAnswer",
}
API_KEY_HEADER = "X-FastHelp-API-Key"
NEED_A_PERSON = frozenset({"WTYP0030", "WTYP0020"})  # authentication, licence
RETRYABLE_CODES = frozenset({"ETYP0040"})  # application error
CALL_MISSING = "WPRDEXTC3201"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: The JSON text of ``jsonData`` (compact, non-ASCII as it is); an encoder holds no state between calls.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def form_body(json_data: str) -> bytes:
    """The request body ``jsonData=<json_data>``: byte for byte what aiohttp sends for
    ``data={"jsonData": json_data}`` (its ``FormData`` writes ``urlencode(..., encoding="utf-8")``,
    that is ``quote_plus`` of each name and value), without building a ``FormData`` per request."""
    return ("jsonData=" + quote_plus(json_data)).encode("ascii")


class ResultHook(Protocol):
    """Told about every attempt: ``outcome`` is delivered, dry_run, retry or dead."""

    def __call__(
        self, payload: dict[str, Any], outcome: str, *, status: int | None, body: str | None,
        error: str | None, attempts: int, unhealthy: bool,
    ) -> Awaitable[None]: ...


def classify(status: int, body: bytes, *, attempts: int, call_missing_retries: int,
             retry_after: str | None = None) -> Delivery:
    """The `Delivery` for one TopS.II reply. ``attempts``: attempts finished before this one.

    Non-2xx statuses follow the shared rules of `replies.classify_status`; a 2xx is judged by its
    ``result`` and codes (module docstring).
    """
    by_status = classify_status(status, body, retry_after)
    if by_status is not None:
        return by_status
    reply = json_object(body)
    if reply is None:
        return Delivery("retry", error=f"HTTP {status} with a body that is not a JSON object: {excerpt(body)}",
                        status=status)
    result = str(reply.get("result", "")).lower()
    if result == "success":
        return Delivery("delivered", status=status)
    if result != "fail":
        return Delivery("dead", error=f"unexpected result {excerpt(str(reply.get('result')))!r}", status=status)
    code, sub = str(reply.get("messageCode") or ""), str(reply.get("subMessageCode") or "")
    message = excerpt(" ".join(str(reply.get(k) or "") for k in ("message", "subMessage")))
    error = f"{code}{'/' + sub if sub else ''}: {message}".strip()
    if code in NEED_A_PERSON:
        return Delivery("dead", error=error, status=status, unhealthy=True)
    if code in RETRYABLE_CODES:
        return Delivery("retry", error=error, status=status)
    if sub == CALL_MISSING and attempts < call_missing_retries:
        return Delivery("retry", error=error, status=status)
    return Delivery("dead", error=error, status=status)


class TopsSender:
    """The outbox sender of target ``tops``.

    Args:
        config: the ``tops`` section: ``env`` (PROD or else TEST) picks ``prod``/``test``
            ``base_url`` and ``api_key``; ``real_send``; ``timeout_s`` per request (seconds);
            ``call_missing_retries``; ``ca_file`` (extra CA bundle; TLS is always verified).
        session: the shared aiohttp session (owned and closed by the caller).
        on_result: awaited after every attempt with the row's payload (see `ResultHook`); its
            failures are logged, never fail the delivery.
    """

    def __init__(self, config: TopsConfig, session: aiohttp.ClientSession, *, on_result: ResultHook | None = None) -> None:
        self.session = session
        self.on_result = on_result
        self.unhealthy = False
        self.last_error: str | None = None
        self.sent = 0
        self._apply(config)

    def _apply(self, config: TopsConfig) -> None:
        self.config = config
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else True
        # The URL of each API, parsed once per configuration instead of once per request (a text
        # yarl will not parse stays text: aiohttp then fails that request as it always did).
        base = config.target.base_url.rstrip("/")
        self._urls: dict[str, yarl.URL | str] = {}
        for api in ROOT_KEYS:
            url = base + API_PATH + api + ".json"
            try:
                self._urls[api] = yarl.URL(url)
            except (TypeError, ValueError):
                self._urls[api] = url

    def reconfigure(self, config: Config) -> None:
        self._apply(config.tops)

    def health(self) -> dict[str, Any]:
        env = "PROD" if self.config.target is self.config.prod else "TEST"
        state = "dry_run" if not self.config.real_send else ("unhealthy" if self.unhealthy else "sending")
        return {"ok": not self.unhealthy, "state": state, "env": env, "sent": self.sent, "last_error": self.last_error}

    async def send(self, row: OutboxRow) -> Delivery:
        api, body = row.payload.get("api"), row.payload.get("body")
        if api not in ROOT_KEYS or not isinstance(body, dict) or list(body) != [ROOT_KEYS[api]]:
            return await self._finish(row, Delivery("dead", error=f"malformed outbox payload for api {api!r}"), None)
        if not self.config.real_send:
            log.info("dry run: TopS.II request recorded, not sent", extra={"api": api, "outbox_id": row.id})
            await self._report(row, "dry_run", Delivery("delivered", response="dry_run"), None)
            return Delivery("delivered", response="dry_run")
        target = self.config.target
        if target.api_key is None:
            error = f"no API key configured for tops.{'prod' if target is self.config.prod else 'test'}"
            return await self._finish(row, Delivery("retry", error=error, unhealthy=True), None)
        # The form body built here, as aiohttp would build it from ``data={"jsonData": ...}`` (same
        # bytes, same Content-Length and Content-Type headers in the same order), without FormData.
        form = BytesPayload(form_body(_JSON.encode(body)), content_type=FORM_CONTENT_TYPE)
        key = target.api_key.get_secret_value()
        headers = {API_KEY_HEADER: key, "Accept": "application/json", **idempotency_header(row.idempotency_key)}
        try:
            reply = await exchange(self.session, "POST", self._urls[api], timeout_s=self.config.timeout_s,
                                   secrets=[key], data=form, headers=headers, ssl=self._ssl)
        except UpstreamError as exc:
            return await self._finish(row, Delivery("retry", error=str(exc)), None)
        delivery = classify(reply.status, reply.body, attempts=row.attempts,
                            call_missing_retries=self.config.call_missing_retries,
                            retry_after=reply.headers.get("Retry-After"))
        return await self._finish(row, delivery, reply.body)

    async def _finish(self, row: OutboxRow, delivery: Delivery, raw: bytes | None) -> Delivery:
        if delivery.outcome == "delivered":
            self.sent += 1
            self.unhealthy = False
        else:
            self.last_error = delivery.error
            self.unhealthy = self.unhealthy or delivery.unhealthy
            log.warning("TopS.II request not delivered", extra={
                "outbox_id": row.id, "outcome": delivery.outcome, "status": delivery.status, "error": delivery.error})
        text = raw.decode("utf-8", "replace") if raw is not None else None
        await self._report(row, delivery.outcome, delivery, text)
        if text is not None:
            delivery = dataclasses.replace(delivery, response=excerpt(text))
        return delivery

    async def _report(self, row: OutboxRow, outcome: str, delivery: Delivery, text: str | None) -> None:
        if self.on_result is None:
            return
        try:
            await self.on_result(row.payload, outcome, status=delivery.status, body=text, error=delivery.error,
                                 attempts=row.attempts + 1, unhealthy=delivery.unhealthy)
        except Exception:
            log.exception("TopS.II result hook failed", extra={"outbox_id": row.id})
