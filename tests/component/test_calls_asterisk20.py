"""Calls on Asterisk 20.20.1 over a real AMI socket: a fake answering as 20.20.1 (CoreShowChannels from its
recording) replays the recorded chan_sip and PJSIP calls (tests/fixtures/asterisk-20.20.1/ami/events) into
AMIClient -> CallService; the call records and DID Optimizer outcomes hold what chan_sip's Hangup without
TechCause allows."""

from __future__ import annotations

from typing import Any

from telephonyd.ami import AMIClient
from telephonyd.calls.documents import outcome_payload
from telephonyd.calls.service import CallService
from telephonyd.calls.settings import CallsConfig
from telephonyd.config import AMIConfig
from tests.fakes.ami import FakeAMIServer
from tests.helpers import running, wait_until

SECRET = "s3cret"
CALLS = ("call_sip_answered_caller_hangs_up.raw", "call_sip_busy_486.raw", "call_pjsip_busy_486.raw")


async def test_recorded_20_calls_over_ami_give_their_outcomes() -> None:
    async with FakeAMIServer(secret=SECRET, version="20.20.1") as ami:
        client = AMIClient(AMIConfig(enabled=True, port=ami.port, secret=SECRET, backoff_base_s=0.05,
                                     backoff_max_s=0.2, events="on"))
        service = CallService(CallsConfig(enabled=True), ami=client)
        ended: list[dict[str, Any]] = []
        service.add_listener(lambda e: ended.append(e.snapshot) if e.kind == "call.ended" else None)
        async with running(service), running(client):
            await wait_until(lambda: service.resyncs == 1, what="the first resync (CoreShowChannels)")
            for name in CALLS:
                ami.replay(name)
            await wait_until(lambda: len(ended) == len(CALLS), what="three calls ended")
        answered, sip_busy, pjsip_busy = ended
        assert {c["direction"] for c in ended} == {"internal"}
        assert (answered["dial_status"], answered["hangup_cause"], answered["tech_cause"]) == ("ANSWER", 16, None)
        assert (sip_busy["dial_status"], sip_busy["hangup_cause"], sip_busy["tech_cause"]) == ("BUSY", 17, None)
        assert sip_busy["hung_up_by"] == pjsip_busy["hung_up_by"] == "callee"
        assert pjsip_busy["tech_cause"] == "486"
        payloads = [outcome_payload(c, source="telephonyd-ami", timestamp=1796199563) for c in ended]
        assert all(p is not None for p in payloads)
        a, b, c = payloads
        assert a is not None and b is not None and c is not None
        assert (a["dialStatus"], b["dialStatus"], c["dialStatus"]) == ("ANSWER", "BUSY", "BUSY")
        assert (a["hangupCause"], b["hangupCause"], c["hangupCause"]) == (16, 17, 17)
        assert b["agentId"] == "2010" and b["customerPhone"] == "2011"
        # An answered chan_sip leg's 200 OK, as for PJSIP; a chan_sip 486 has no SIP cause on AMI.
        assert (a["sipHangupCause"], b["sipHangupCause"], c["sipHangupCause"]) == (200, None, 486)
