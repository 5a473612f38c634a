"""The ``call_log`` FastAGI handler: one durable DID Optimizer outcome per outbound call leg.

Dialplan (VICIdial's own lines work unchanged; the argument form is the plain alternative)::

    ; start stage, before Dial (VICIdial: first priority of the outbound trunk extension)
    exten => _91NXXNXXXXXX,1,AGI(agi://127.0.0.1:4577/call_log)
    ; end stage, any of:
    exten => h,1,AGI(agi://127.0.0.1:4577/call_log--HVcauses--PRI-----NODEBUG-----${HANGUPCAUSE}-----...)
    exten => h,2,AGI(agi://127.0.0.1:4573/call_log,${DIALSTATUS},${HANGUPCAUSE})

The handler answers a result word (the FastAGI server stores it in ``TELEPHONYD_RESULT``):

* ``STARTED`` - start stage (any session outside the ``h`` extension that is not VICIdial's hangup
  line, with or without arguments): the dialed number, time, campaign, agent, lead and list were
  remembered for the end stage (in memory, bounded, with a TTL); nothing is reported.
* ``SKIPPED`` - end stage of a leg that never dialed (no DIALSTATUS anywhere): reporting it would
  count the call twice (e.g. a caller hanging up during the start stage, recording 08).
* ``QUEUED`` - the outcome was written to the outbox (committed) for the DID Optimizer.
* ``DUPLICATE`` - an outcome for this uniqueid was already in the outbox: nothing new was
  written. This is normal when VICIdial's ``h,1`` line and a second ``h`` line both run.
* ``ERROR`` - the outbox write failed or timed out (store down); the dialplan may test it. The
  log line carries the payload, so nothing is lost for good. After a timeout the write may still
  complete. Also a session without ``agi_uniqueid`` or with one longer than
  ``MAX_UNIQUEID_CHARS`` (191): refused with one warning line, nothing recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ..config import CallLogConfig
from ..errors import TelephonydError
from ..logs import log_context
from . import constants as c
from .fetch import AGICommands, FetchPlan, fetch_values
from .hangup_line import HangupFields, hangup_fields, is_hvcauses
from .outcome import StartRecord, VariableNames, dialed_number, end_stage_names, first_of, resolve_outcome
from .payload import DIDSelectionLike, build_payload
from .start_cache import StartCache

log = logging.getLogger(__name__)

#: Failures logged without a traceback (store down, timeout); anything else is a bug and keeps it.
_EXPECTED_ERRORS = (TelephonydError, TimeoutError, OSError)


class EnqueueResult(Protocol):
    id: Any
    created: bool


#: ``await selection_for(uniqueid)``: the leg's ``did_select`` decision, or None (see
#: ``DIDSelectService.selection_for``). Bounded by `SELECTION_LOOKUP_TIMEOUT_S`; a failure only
#: leaves the selection fields out of the report.
SelectionLookup = Callable[[str], Awaitable[DIDSelectionLike | None]]
#: Seconds the end stage waits for the selection lookup.
SELECTION_LOOKUP_TIMEOUT_S = 1.0

#: ``await enqueue(target, key, payload)``; returns once the row is committed (the outbox's
#: ``Outbox.enqueue``). Raises when the store cannot take the row.
Enqueue = Callable[[str, str, dict[str, Any]], Awaitable[EnqueueResult]]


class AGISessionLike(AGICommands, Protocol):
    env: Mapping[str, str]
    script: str
    args: list[str]


def variable_names(config: CallLogConfig) -> VariableNames:
    v = config.variables
    return VariableNames(
        campaign=tuple(v.campaign),
        agent=tuple(v.agent),
        lead=tuple(v.lead),
        list_id=tuple(v.list_id),
        did=tuple(v.did),
        customer_phone=tuple(v.customer_phone),
    )


def is_end_stage(env: Mapping[str, str], script: str) -> bool:
    """The ``h`` extension or VICIdial's HVcauses script name: only these report.

    Arguments do not make an end stage: ``call_log,PROBE`` before Dial (or mid-call) would report a
    call whose dial status is ``PROBE`` and make the real outcome at hangup a ``DUPLICATE``. Outside
    ``h`` they are read as a start stage (remembered, nothing sent).
    """
    return env.get(c.ENV_EXTENSION, "").strip() == c.HANGUP_EXTENSION or is_hvcauses(script)


class CallLogHandler:
    """``async handler(session) -> result word`` for the FastAGI route ``call_log``.

    Arguments:
        config: the ``call_log`` section (variable names, start cache TTL/size, ``source``,
            ``default_campaign``, ``enqueue_timeout_s``).
        enqueue: ``async (target, key, payload) -> result`` with ``result.created`` (False when
            the key already existed) and ``result.id``; must return only after the row is
            committed. The key is the leg's uniqueid (``agi_uniqueid``), so a second hangup line
            of the same call creates nothing.
        target: the outbox target of the DID Optimizer sender.
        clock: epoch seconds; stamps ``timestamp`` and drives the start cache TTL.
        selections: the ``did_select`` lookup; with it, a leg whose caller id was selected is
            reported with ``didUsed``, ``didRequestId`` and ``didSelection``.

    Cost per session, in AGI round trips: start stage 1 (``GET FULL VARIABLE`` of the configured
    campaign/agent/lead/list/customer-phone variables), end stage 1 (everything, see
    `telephonyd.calllog.fetch`), plus the server's own ``SET VARIABLE TELEPHONYD_RESULT``.
    """

    route = "call_log"

    def __init__(
        self,
        config: CallLogConfig,
        enqueue: Enqueue,
        target: str = c.DEFAULT_TARGET,
        clock: Callable[[], float] = time.time,
        selections: SelectionLookup | None = None,
    ) -> None:
        self._selections = selections
        self.target = target
        self._enqueue = enqueue
        self._clock = clock
        self._apply(config)
        self.starts = StartCache(ttl_s=config.start_ttl_s, max_entries=config.start_cache_max, clock=clock)
        self.results: Counter[str] = Counter()

    def _apply(self, config: CallLogConfig) -> None:
        self.config = config
        self.variables = variable_names(config)
        self._start_plan = FetchPlan(self.variables.start_stage())
        self._end_plan = FetchPlan(end_stage_names(self.variables))

    def reconfigure(self, config: Any) -> None:
        """Apply a reloaded `Config` (SIGHUP) from the next session on: the variable names,
        ``default_campaign`` and ``enqueue_timeout_s``; the start cache's TTL and size and
        ``source`` (also stamped by the VICIdial source) need a restart and keep their value."""
        new = config.call_log
        self._apply(self.config.model_copy(update={"variables": new.variables, "default_campaign": new.default_campaign,
                                                   "enqueue_timeout_s": new.enqueue_timeout_s}))

    def health(self) -> dict[str, Any]:
        """Counters for the status page: result words so far and the start cache's size."""
        return {
            "ok": True,
            "state": "ready",
            "results": dict(self.results),
            "start_cache": len(self.starts),
            "start_cache_evicted": self.starts.evicted,
        }

    async def __call__(self, session: AGISessionLike) -> str:
        env = session.env
        uniqueid = env.get(c.ENV_UNIQUEID, "").strip()
        args = list(session.args)
        with log_context(uniqueid=uniqueid or None):
            if not uniqueid:
                log.warning("call_log session without agi_uniqueid; nothing recorded")
                result = c.RESULT_ERROR
            elif len(uniqueid) > c.MAX_UNIQUEID_CHARS:
                log.warning("call_log refused: uniqueid too long; nothing recorded",
                            extra={"uniqueid_chars": len(uniqueid), "max_chars": c.MAX_UNIQUEID_CHARS})
                result = c.RESULT_ERROR
            elif is_end_stage(env, session.script):
                result = await self._end_stage(session, uniqueid, hangup_fields(session.script, args))
            else:
                result = await self._start_stage(session, uniqueid)
        self.results[result] += 1
        return result

    # -- start stage -------------------------------------------------------------------------------

    async def _start_stage(self, session: AGISessionLike, uniqueid: str) -> str:
        fetched = await fetch_values(session, self._start_plan, fallback=False)
        values, names = fetched.values, self.variables
        record = StartRecord(
            dialed_number=dialed_number(session.env),
            started_at=self._clock(),
            campaign=first_of(values, names.campaign),
            agent=first_of(values, names.agent),
            lead=first_of(values, names.lead),
            list_id=first_of(values, names.list_id),
            customer_phone=first_of(values, names.customer_phone),
        )
        self.starts.put(uniqueid, record)
        log.debug(
            "call start remembered",
            extra={"dialed_number": record.dialed_number, "campaign": record.campaign, "fetch": fetched.method},
        )
        return c.RESULT_STARTED

    # -- end stage ---------------------------------------------------------------------------------

    async def _end_stage(self, session: AGISessionLike, uniqueid: str, line: HangupFields) -> str:
        fetched = await fetch_values(session, self._end_plan, fallback=True)
        if fetched.error:
            log.warning(
                "could not read channel variables; using what the dialplan passed",
                extra={"error": fetched.error},
            )
        outcome = resolve_outcome(
            env=session.env,
            line=line,
            values=fetched.values,
            start=self.starts.get(uniqueid),
            variables=self.variables,
            default_campaign=self.config.default_campaign,
        )
        linkedid = fetched.values.get(c.CHANNEL_LINKEDID, "").strip() or None
        if outcome is None:
            self.starts.discard(uniqueid)
            with log_context(linkedid=linkedid):
                log.info(
                    "call leg skipped: no dial status",
                    extra={"hangup_cause": line.hangup_cause or fetched.values.get(c.HANGUPCAUSE, "")},
                )
            return c.RESULT_SKIPPED
        selection = await self._selection(uniqueid)
        payload = build_payload(outcome, source=self.config.source, timestamp=int(self._clock()), selection=selection)
        with log_context(linkedid=outcome.linkedid):
            try:
                async with asyncio.timeout(self.config.enqueue_timeout_s):
                    queued = await self._enqueue(self.target, outcome.uniqueid, payload)
            except Exception as exc:  # noqa: BLE001 - any failure to record becomes ERROR for the dialplan
                # The payload goes with the error so an operator can replay it from the journal.
                log.error(
                    "call outcome not recorded",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:300], "payload": payload},
                    exc_info=not isinstance(exc, _EXPECTED_ERRORS),
                )
                return c.RESULT_ERROR
            self.starts.discard(uniqueid)
            details = {
                "outbox_id": queued.id,
                "dial_status": outcome.dial_status,
                "hangup_cause": outcome.hangup_cause,
                "campaign": outcome.campaign,
                "fetch": fetched.method,
            }
            if queued.created:
                log.info("call outcome queued", extra=details)
                return c.RESULT_QUEUED
            log.info("call outcome already queued; nothing new recorded", extra=details)
            return c.RESULT_DUPLICATE

    async def _selection(self, uniqueid: str) -> DIDSelectionLike | None:
        if self._selections is None:
            return None
        try:
            async with asyncio.timeout(SELECTION_LOOKUP_TIMEOUT_S):
                return await self._selections(uniqueid)
        except Exception as exc:  # noqa: BLE001 - the report goes out without the selection fields
            log.info("DID selection lookup failed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
            return None
