"""The DID Optimizer sender: one call outcome per outbox row, POSTed as JSON.

The API (see ``upstreams.md``) authenticates with ``x-api-key``, rate-limits with 429 and a
plain-text body, may answer through a CDN with HTML pages, and reports some failures as a 200 with
``success: false``. It has no idempotency: every POST counts, so a reply is only "delivered" when
it says ``success: true``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import UpstreamError
from ..outbox.model import Delivery, OutboxRow
from .replies import classify_status, excerpt, failure_text, json_object
from .transport import exchange, idempotency_header

if TYPE_CHECKING:
    from ..config import DIDOptimizerConfig

#: The outbox target the DID Optimizer sender is registered under.
DID_OPTIMIZER_TARGET = "did_optimizer"
USER_AGENT = "telephonyd"


def classify_reply(status: int, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Delivery:
    """Judge one reply of ``POST /api/v1/call-results``.

    2xx with JSON ``success: true`` is delivered; a 2xx with ``success: false`` is a dead letter
    with its ``message``/``error``; a 2xx without a readable ``success`` is a dead letter too (the
    server may or may not have counted it, and it counts every POST, so it is not sent blindly
    again). Other statuses follow `classify_status`.
    """
    decided = classify_status(status, body, headers.get("Retry-After"), now)
    if decided is not None:
        return decided
    data = json_object(body)
    success = None if data is None else data.get("success")
    if success is True:
        return Delivery("delivered", status=status, response=excerpt(body))
    if success is False:
        return Delivery("dead", error=failure_text(status, body), status=status, response=excerpt(body))
    return Delivery("dead", error=f"HTTP {status} without success:true: {excerpt(body)}", status=status)


class DIDOptimizerSender:
    """Sends outbox rows of target `DID_OPTIMIZER_TARGET` to ``{base_url}{path}``.

    Args:
        config: ``DIDOptimizerConfig``: ``base_url``, ``path``, ``api_key`` (sent as ``x-api-key``
            only when set; never logged or put in errors), ``timeout_s`` (whole request and reply).
        session: the one `aiohttp.ClientSession` the daemon shares among its upstream senders; the
            sender neither creates nor closes it.

    The row's payload is the JSON body as is (the ``call_log`` handler builds it).
    """

    def __init__(self, config: DIDOptimizerConfig, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._apply(config)

    def _apply(self, config: DIDOptimizerConfig) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/" + config.path.lstrip("/")
        self._api_key = config.api_key.get_secret_value() if config.api_key else None

    def reconfigure(self, config: Any) -> None:
        """Apply a reloaded configuration (SIGHUP): base URL, path, API key, timeout change live."""
        self._apply(config.did_optimizer)

    async def send(self, row: OutboxRow) -> Delivery:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **idempotency_header(row.idempotency_key)}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        try:
            reply = await exchange(
                self.session, "POST", self.url, timeout_s=self.config.timeout_s,
                secrets=(self._api_key,), json=row.payload, headers=headers,
            )
        except UpstreamError as exc:
            return Delivery("retry", error=str(exc))
        return classify_reply(reply.status, reply.headers, reply.body, time.time())
