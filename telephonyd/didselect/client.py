"""`DIDSelectClient`: ``GET /api/v1/dids/next`` over pooled keep-alive connections, within a deadline.

One `aiohttp.ClientSession` of its own (a connector of ``did_select.max_connections`` keep-alive
connections), so an outbox backlog on the shared session never queues a call waiting for its DID;
every request goes through `telephonyd.upstream.transport.exchange` (bounded in time and size).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp

from ..errors import UpstreamError
from ..upstream.replies import scrub
from ..upstream.transport import exchange
from . import constants as c
from .reply import SelectionQuery, Verdict, judge

if TYPE_CHECKING:
    from ..config import DIDOptimizerConfig, DIDSelectConfig

log = logging.getLogger(__name__)

USER_AGENT = "telephonyd"
#: Seconds an idle pooled connection is kept open.
KEEPALIVE_S = 30.0
#: Seconds closing the pool may take at shutdown.
CLOSE_TIMEOUT_S = 5.0


class DIDSelectClient:
    """Asks the DID Optimizer for the next DID.

    ``api``: the ``did_optimizer`` section (``base_url``, ``api_key`` sent as ``x-api-key``, never
    logged); ``config``: the ``did_select`` section (``path``, ``max_connections``). `start` opens
    the pool, `close` closes it.
    """

    def __init__(self, api: DIDOptimizerConfig, config: DIDSelectConfig) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limit = config.max_connections
        self.apply(api, config)

    def apply(self, api: DIDOptimizerConfig, config: DIDSelectConfig) -> None:
        """Base URL, path and API key (live on reload; the pool size needs a restart)."""
        self.url = api.base_url.rstrip("/") + "/" + config.path.lstrip("/")
        self._api_key = api.api_key.get_secret_value() if api.api_key else None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await session.close()
            except TimeoutError:
                log.warning("DID Optimizer connections not closed in time")

    async def select(self, query: SelectionQuery, request_id: str, timeout_s: float) -> Verdict:
        """One request, answered within ``timeout_s`` seconds: the `Verdict`, never an exception.

        ``request_id`` goes in ``X-Request-ID`` (the uniqueid of the call, which links the later
        outcome report to this selection). A timeout gives reason ``timeout``, a refused or broken
        connection ``transport``; both count against the API's health.
        """
        session = self._session
        if session is None:
            return Verdict(None, reason=c.REASON_TRANSPORT, breaker_failure=True, detail="client not started")
        request_id = "".join(ch for ch in request_id if ch.isprintable() and ch.isascii())[:64]
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "X-Request-ID": request_id}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        try:
            # Our own deadline fires first, so a timeout is told apart from other transport errors.
            async with asyncio.timeout(max(0.0, timeout_s)):
                reply = await exchange(
                    session, "GET", self.url, timeout_s=timeout_s + 1.0, secrets=(self._api_key,),
                    params=query.params(), headers=headers,
                )
        except TimeoutError:
            return Verdict(None, reason=c.REASON_TIMEOUT, breaker_failure=True, detail=f"no reply within {timeout_s:.3f}s")
        except UpstreamError as exc:
            return Verdict(None, reason=c.REASON_TRANSPORT, breaker_failure=True, detail=str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - whatever goes wrong here, the call goes on (fail open)
            log.warning("DID selection request failed unexpectedly", exc_info=True)
            text = scrub(f"{type(exc).__name__}: {exc}", (self._api_key,))
            return Verdict(None, reason=c.REASON_TRANSPORT, breaker_failure=True, detail=text[:300])
        return judge(reply.status, reply.body)
