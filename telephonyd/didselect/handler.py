"""The ``did_select`` FastAGI handler: the caller id DID of the next outbound call, within a budget.

Dialplan, just before Dial() (see ``dialplan/``)::

    same => n,AGI(agi://127.0.0.1:4573/did_select)

Per session: one ``GET FULL VARIABLE`` reads campaign, agent, lead, customer phone, state and area
code (`telephonyd.calllog.fetch`); one ``GET /api/v1/dids/next`` (``X-Request-ID: <uniqueid>``) is
sent unless the circuit breaker is open, cut off at ``did_select.budget_s`` after the session
started; then one ``EXEC MSet`` of the channel variables (`reply.channel_settings`; ``SET VARIABLE``
when only ``OPTIMIZER_STATUS`` is set). The call always
proceeds: whatever the API does, the session ends within the budget plus a few AGI round trips.

Outcomes (the result word lands in ``TELEPHONYD_RESULT``, see `constants`):

==========  ================  ==================  ==============  =============
result      OPTIMIZER_STATUS  OPTIMIZER_FALLBACK  OPTIMIZER_DID   CALLERID(num)
==========  ================  ==================  ==============  =============
SELECTED    SUCCESS           API's is_fallback   the DID         the DID
REUSED      FAILURE           YES                 last good DID   that DID
FALLBACK    FAILURE           YES                 configured DID  that DID
FAILED      FAILURE           (not set)           (not set)       left alone
DISABLED    FAILURE           (not set)           (not set)       left alone
==========  ================  ==================  ==============  =============
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..calllog.fetch import AGICommands, FetchPlan, fetch_values
from ..logs import log_context
from . import constants as c
from .breaker import OPEN, CircuitBreaker
from .client import DIDSelectClient
from ..ttlmap import TTLMap
from .metrics import DIDSelectMetrics
from .model import Selection
from .reply import SelectionQuery, Verdict, area_code_of, channel_settings, fallback_did, mset_command

if TYPE_CHECKING:
    from ..config import DIDSelectConfig

log = logging.getLogger(__name__)

#: Below this many seconds left, the API is not asked at all (the answer could not arrive in time).
MIN_ASK_S = 0.002


class AGISessionLike(AGICommands, Protocol):
    env: Mapping[str, str]

    async def command(self, line: str) -> Any: ...

    async def set_variable(self, name: str, value: str, *, timeout: float | None = None) -> None: ...


def _first(values: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = values.get(name, "").strip()
        if value:
            return value
    return ""


class DIDSelectHandler:
    """``async handler(session) -> result word`` for the FastAGI route ``did_select``.

    ``on_selection`` receives every decision at once (the service remembers it for the hangup's
    ``call_log`` and queues it for the store); ``reuse`` holds the last good DID per (campaign,
    area code) when ``reuse_ttl_s`` > 0.
    """

    route = "did_select"

    def __init__(
        self,
        config: DIDSelectConfig,
        client: DIDSelectClient,
        breaker: CircuitBreaker,
        metrics: DIDSelectMetrics,
        on_selection: Callable[[Selection], None],
        *,
        reuse: TTLMap[tuple[str, str], str] | None = None,
        node_id: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.metrics = metrics
        self.reuse = reuse
        self.node_id = node_id
        self._on_selection = on_selection
        self._clock = clock
        self.apply(config)

    def apply(self, config: DIDSelectConfig) -> None:
        """Use ``config`` from the next session on (budget, fallbacks, enabled, variable names)."""
        self.config = config
        v = config.variables
        names = {"campaign": v.campaign, "agent": v.agent, "lead": v.lead, "customer_phone": v.customer_phone,
                 "state": v.state, "area_code": v.area_code}  # fmt: skip
        self._names = {k: tuple(n) for k, n in names.items()}
        self._plan = FetchPlan(tuple(dict.fromkeys(n for names in self._names.values() for n in names)))

    async def __call__(self, session: AGISessionLike) -> str:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.config.budget_s
        uniqueid = session.env.get(c.ENV_UNIQUEID, "").strip()
        with log_context(uniqueid=uniqueid or None, request_id=uniqueid or None):
            if not uniqueid:
                log.warning("did_select session without agi_uniqueid; nothing asked")
                self.metrics.selections.labels(c.RESULT_ERROR).inc()
                await session.set_variable(c.OPTIMIZER_STATUS, c.STATUS_FAILURE)
                return c.RESULT_ERROR
            if self._nothing_to_read():
                query = self.query({}, session.env)  # the answer is FAILED whatever the channel holds
            else:
                fetched = await fetch_values(session, self._plan, fallback=False)
                query = self.query(fetched.values, session.env)
            verdict = await self._ask(query, uniqueid, deadline)
            selection = self._decide(uniqueid, query, verdict, (loop.time() - started) * 1000.0)
            self._on_selection(selection)
            self.metrics.selections.labels(selection.result).inc()
            self.metrics.latency.observe(selection.latency_ms / 1000.0)
            if verdict.reason is not None:
                self.metrics.failures.labels(verdict.reason).inc()
            await self._set(session, channel_settings(selection.did, status=selection.status, fallback=selection.fallback))
            extra: dict[str, Any] = {"result": selection.result, "did": selection.did, "campaign": query.campaign,
                                     "latency_ms": round(selection.latency_ms, 1)}  # fmt: skip
            if verdict.reason is not None:
                extra.update(reason=verdict.reason, detail=verdict.detail)
                # While the breaker is open every call would log the same line: the opening did.
                quiet = verdict.reason in (c.REASON_BREAKER_OPEN, c.REASON_DISABLED)
                log.log(logging.DEBUG if quiet else logging.INFO, "DID selection failed open", extra=extra)
            else:
                log.debug("DID selected", extra=extra)
            return selection.result

    def _nothing_to_read(self) -> bool:
        """True when no channel value can change the outcome: the API will not be asked (disabled,
        or the breaker open with no probe due) and no fallback or reuse is configured. The session
        then skips its ``GET FULL VARIABLE``: two AGI round trips in all during an outage."""
        if self.config.fallback_dids or self.reuse is not None:
            return False
        return not self.config.enabled or (self.breaker.state == OPEN and not self.breaker.probe_due())

    async def _set(self, session: AGISessionLike, settings: list[tuple[str, str]]) -> None:
        """One ``EXEC MSet`` for several variables (one round trip); ``SET VARIABLE`` each when MSet
        cannot carry a value or answers anything but 200."""
        line = mset_command(settings) if len(settings) > 1 else None
        if line is not None:
            reply = await session.command(line)
            if reply.code == 200:
                return
            log.info("EXEC MSet refused, setting variables one by one", extra={"agi_code": reply.code})
        for name, value in settings:
            await session.set_variable(name, value)

    def query(self, values: Mapping[str, str], env: Mapping[str, str]) -> SelectionQuery:
        """The API's fields from the channel values; the customer phone falls back to the extension
        being dialed (digits only), then the DNID; the area code to the phone's (NANP)."""
        names = self._names
        phone = _first(values, names["customer_phone"])
        if not phone:
            extension = env.get(c.ENV_EXTENSION, "").strip().lstrip("+")
            dnid = env.get(c.ENV_DNID, "").strip()
            phone = extension if extension.isdigit() else (dnid if dnid.lstrip("+").isdigit() else "")
        return SelectionQuery(
            campaign=_first(values, names["campaign"]),
            agent=_first(values, names["agent"]),
            lead=_first(values, names["lead"]),
            customer_phone=phone,
            state=_first(values, names["state"]),
            area_code=_first(values, names["area_code"]) or area_code_of(phone),
        )

    async def _ask(self, query: SelectionQuery, request_id: str, deadline: float) -> Verdict:
        if not self.config.enabled:
            return Verdict(None, reason=c.REASON_DISABLED, detail="did_select.enabled is false")
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining < MIN_ASK_S:
            return Verdict(None, reason=c.REASON_TIMEOUT, detail="budget spent before asking")
        if not self.breaker.allow():
            return Verdict(None, reason=c.REASON_BREAKER_OPEN, detail="circuit breaker open")
        sent = loop.time()
        try:
            verdict = await self.client.select(query, request_id, deadline - sent)
        except BaseException:
            self.breaker.release()
            raise
        self.metrics.api_latency.observe(loop.time() - sent)
        self.breaker.record(not verdict.breaker_failure)
        return verdict

    def _decide(self, uniqueid: str, query: SelectionQuery, verdict: Verdict, latency_ms: float) -> Selection:
        key = (query.campaign, query.area_code)
        did, fallback, result = verdict.did, verdict.is_fallback, c.RESULT_SELECTED
        if did is not None:
            if self.reuse is not None:
                self.reuse.put(key, did)
        else:
            fallback = True
            reused = self.reuse.get(key) if self.reuse is not None else None
            configured = fallback_did(self.config.fallback_dids, query.campaign)
            if reused is not None:
                did, result = reused, c.RESULT_REUSED
            elif configured is not None:
                did, result = configured, c.RESULT_FALLBACK
            else:
                fallback = False
                result = c.RESULT_DISABLED if verdict.reason == c.REASON_DISABLED else c.RESULT_FAILED
        return Selection(
            uniqueid=uniqueid, request_id=uniqueid, result=result,
            status=c.STATUS_SUCCESS if result == c.RESULT_SELECTED else c.STATUS_FAILURE,
            did=did, fallback=fallback, reason=verdict.reason, detail=verdict.detail, latency_ms=latency_ms,
            campaign=query.campaign, area_code=query.area_code, created_at=self._clock(), node_id=self.node_id,
        )  # fmt: skip
