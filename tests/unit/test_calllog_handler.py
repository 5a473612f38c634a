"""`CallLogHandler` over in-memory channels built from the Asterisk 22.10.1 recordings.

No sockets: each session is the recorded channel answering commands by Asterisk's rules
(tests/fakes/agi.py `FakeChannel.answer`), so the handler's logic is checked on its own; the
component tests run the same scenarios through the real FastAGI server.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest

from telephonyd.calllog import CallLogHandler
from telephonyd.config import CallLogConfig
from telephonyd.errors import StoreError
from telephonyd.logs import ContextFilter, current_context
from tests.calllog_scenarios import NOW, SCENARIOS, call_log_sessions
from tests.calllog_scenarios import expected as payload
from tests.fakes.agi import FakeChannel


@dataclass
class Reply:
    code: int
    result: str | None
    data: str | None
    text: str


def parse_reply(lines: list[str]) -> Reply:
    last = lines[-1]
    match = re.match(r"(\d{3}) result=(\S*)(?: \((.*)\))?", last, re.DOTALL)
    if not match:
        return Reply(int(last[:3]), None, None, last)
    return Reply(int(match.group(1)), match.group(2), match.group(3), last)


class MemorySession:
    """The AGISession contract over a FakeChannel, in memory."""

    def __init__(self, channel: FakeChannel, *, full_variable: bool = True, broken: bool = False) -> None:
        self.channel = channel.copy()
        self.env = self.channel.env
        self.script = self.env["network_script"]
        self.args = [self.env[f"arg_{i}"] for i in range(1, 100) if f"arg_{i}" in self.env]
        self.hungup = self.channel.dead
        self.full_variable = full_variable
        self.broken = broken
        self.lines: list[str] = []

    async def command(self, line: str) -> Reply:
        if self.broken:
            raise ConnectionResetError("Asterisk went away")
        self.lines.append(line)
        if not self.full_variable and line.upper().startswith("GET FULL VARIABLE"):
            return parse_reply(["510 Invalid or unknown command"])
        return parse_reply(self.channel.answer(line))

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command(f"GET VARIABLE {name}")
        return (reply.data or "") if reply.result == "1" else None


@dataclass
class Queued:
    id: int
    created: bool


class RecordingOutbox:
    """Records enqueue calls; like the outbox, a second (target, key) creates nothing."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.contexts: list[dict[str, Any]] = []

    async def enqueue(self, target: str, key: str, payload: dict[str, Any]) -> Queued:
        self.calls.append((target, key, payload))
        self.contexts.append(current_context())
        created = (target, key) not in self.rows
        if created:
            self.rows[(target, key)] = payload
        return Queued(id=len(self.rows), created=created)




def make_handler(outbox: RecordingOutbox, **config: Any) -> CallLogHandler:
    return CallLogHandler(CallLogConfig(**config), outbox.enqueue, target="did_optimizer", clock=lambda: NOW)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("full_variable", [True, False], ids=["full-variable", "one-by-one"])
async def test_recorded_scenario(scenario: str, full_variable: bool) -> None:
    expected_payload, expected_results = SCENARIOS[scenario]
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    results, sessions = [], []
    for channel in call_log_sessions(scenario):
        session = MemorySession(channel, full_variable=full_variable)
        results.append(await handler(session))
        sessions.append(session)
    assert results == expected_results
    if expected_payload is None:
        assert outbox.calls == []
    else:
        assert outbox.rows == {("did_optimizer", expected_payload["uniqueid"]): expected_payload}
        # both h lines reported, with the same key: the second created nothing
        assert [(t, k) for t, k, _ in outbox.calls] == [("did_optimizer", expected_payload["uniqueid"])] * 2
    if full_variable:
        assert [len(s.lines) for s in sessions] == [1, 1, 1]  # one AGI round trip per session
        assert all(s.lines[0].startswith('GET FULL VARIABLE "${') for s in sessions)
    assert len(handler.starts) == 0  # the call is over: nothing left behind


async def test_start_stage_remembers_what_the_end_stage_cannot_see() -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    start = FakeChannel.synthetic(
        {"campaign_id": "C1", "agent": "7002", "list_id": "101", "lead_id": "555"},
        uniqueid="1800000000.7", extension="915550001234", dnid="unknown",
    )  # fmt: skip
    assert await handler(MemorySession(start)) == "STARTED"
    end = FakeChannel.synthetic(
        {"DIALSTATUS": "NOANSWER", "HANGUPCAUSE": "16", "OPTIMIZER_DID": "15551230009"},
        uniqueid="1800000000.7", extension="h", dnid="unknown",
    )  # fmt: skip
    assert await handler(MemorySession(end)) == "QUEUED"
    (_, _, body), = outbox.calls
    assert body == payload(
        "1800000000.7", phoneNumber="15551230009", customerPhone="915550001234", campaignId="C1",
        agentId="7002", leadId="555", listId="101", dialStatus="NOANSWER", hangupCause=16,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("variables", "args", "fields"),
    [
        ({"DIALSTATUS": "NOANSWER", "HANGUPCAUSE": "16"}, ["NOANSWER", "16"], {"dialStatus": "NOANSWER", "hangupCause": 16}),
        (
            {"DIALSTATUS": "CONGESTION", "HANGUPCAUSE": "34", "HANGUPCAUSE_KEYS()": "PJSIP/trunk-00000009",
             "HANGUPCAUSE(PJSIP/trunk-00000009,tech)": "SIP 503 Service Unavailable"},
            ["CONGESTION", "34"],
            {"dialStatus": "CONGESTION", "hangupCause": 34, "sipHangupCause": 503, "sipHangupReason": "Service Unavailable"},
        ),
        ({"DIALSTATUS": "CANCEL", "HANGUPCAUSE": "127", "DIALEDTIME": "4"}, ["CANCEL", "127"],
         {"dialStatus": "CANCEL", "hangupCause": 127, "dialedTime": 4, "ringTime": 4}),
    ],
    ids=["NOANSWER", "CONGESTION", "CANCEL"],
)  # fmt: skip
async def test_synthetic_outcomes(variables: dict[str, str], args: list[str], fields: dict[str, Any]) -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    common = {"campaign_id": "TESTCAMP", "agent": "6001", "OPTIMIZER_DID": "15551230001",
              "CHANNEL(hangupsource)": "PJSIP/1010-00000001"}  # fmt: skip
    channel = FakeChannel.synthetic(
        {**common, **variables}, args=args, extension="h", dnid="915555550001", calleridname="V1121053000000012345"
    )
    assert await handler(MemorySession(channel)) == "QUEUED"
    assert outbox.calls[0][2] == payload("1795237838.1", hangupSource="PJSIP/1010-00000001", **fields)


async def test_key_is_the_legs_uniqueid_and_linkedid_is_reported() -> None:
    # A VICIdial auto-dial leg: the Local channel's linkedid is the originating channel's uniqueid.
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    channel = FakeChannel.synthetic(
        {"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "ANSWEREDTIME": "30", "DIALEDTIME": "41"},
        args=["ANSWER", "16"], uniqueid="1795240000.52", linkedid="1795240000.50", extension="h",
    )  # fmt: skip
    assert await handler(MemorySession(channel)) == "QUEUED"
    ((target, key, body),) = outbox.calls
    assert (target, key) == ("did_optimizer", "1795240000.52")
    assert (body["uniqueid"], body["linkedid"]) == ("1795240000.52", "1795240000.50")
    assert (body["duration"], body["dialedTime"], body["ringTime"]) == (30, 41, 11)


async def test_hangup_line_values_are_reported_when_the_channel_cannot_be_read() -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    (channel,) = [c for c in call_log_sessions("02_BUSY") if "HVcauses" in c.env["network_script"]]
    assert await handler(MemorySession(channel, broken=True)) == "QUEUED"
    body = outbox.calls[0][2]
    assert (body["dialStatus"], body["hangupCause"], body["sipHangupCause"]) == ("BUSY", 17, 486)
    assert (body["campaignId"], body["agentId"], body["leadId"]) == ("DEFAULT", "0", "12345")


async def test_enqueue_failure_answers_error_and_keeps_the_start_record(caplog: pytest.LogCaptureFixture) -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    start, h1, h2 = call_log_sessions("02_BUSY")

    async def store_down(target: str, key: str, body: dict[str, Any]) -> Queued:
        raise StoreError("store sqlite:///x unavailable: disk I/O error")

    assert await handler(MemorySession(start)) == "STARTED"
    handler._enqueue = store_down
    with caplog.at_level(logging.ERROR, logger="telephonyd.calllog"):
        assert await handler(MemorySession(h1)) == "ERROR"
    (record,) = [r for r in caplog.records if r.getMessage() == "call outcome not recorded"]
    assert not record.exc_info and "disk I/O error" in record.error
    assert record.payload == SCENARIOS["02_BUSY"][0]  # replayable from the log
    assert handler.starts.get("1795237857.3") is not None  # kept for a later h line
    handler._enqueue = outbox.enqueue
    assert await handler(MemorySession(h2)) == "QUEUED"
    assert handler.starts.get("1795237857.3") is None
    assert handler.health()["results"] == {"STARTED": 1, "ERROR": 1, "QUEUED": 1}


async def test_enqueue_that_hangs_answers_error_within_the_timeout() -> None:
    never = asyncio.Event()

    async def stuck(target: str, key: str, body: dict[str, Any]) -> Queued:
        await never.wait()
        raise AssertionError("unreachable")

    handler = CallLogHandler(CallLogConfig(enqueue_timeout_s=0.05), stuck, clock=lambda: NOW)
    (_, h1, _) = call_log_sessions("01_ANSWER")
    assert await asyncio.wait_for(handler(MemorySession(h1)), 5) == "ERROR"


async def test_cancellation_propagates() -> None:
    async def cancelled(target: str, key: str, body: dict[str, Any]) -> Queued:
        raise asyncio.CancelledError

    handler = CallLogHandler(CallLogConfig(), cancelled, clock=lambda: NOW)
    (_, h1, _) = call_log_sessions("01_ANSWER")
    with pytest.raises(asyncio.CancelledError):
        await handler(MemorySession(h1))


async def test_outcome_log_lines_carry_uniqueid_and_linkedid(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(ContextFilter())
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    with caplog.at_level(logging.INFO, logger="telephonyd.calllog"):
        for scenario in ("02_BUSY", "08_CALLER_HANGUP_DURING_START"):
            for channel in call_log_sessions(scenario):
                await handler(MemorySession(channel))
    by_message: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        by_message.setdefault(record.getMessage(), []).append(record)
    (queued,) = by_message["call outcome queued"]
    assert (queued.uniqueid, queued.linkedid, queued.outbox_id) == ("1795237857.3", "1795237857.3", 1)
    (duplicate,) = by_message["call outcome already queued; nothing new recorded"]
    assert (duplicate.uniqueid, duplicate.linkedid) == ("1795237857.3", "1795237857.3")
    skipped = by_message["call leg skipped: no dial status"]
    assert [(r.uniqueid, r.linkedid) for r in skipped] == [("1795237939.17", "1795237939.17")] * 2
    assert outbox.contexts[0]["uniqueid"] == outbox.contexts[0]["linkedid"] == "1795237857.3"


async def test_session_without_uniqueid_is_an_error() -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    channel = FakeChannel.synthetic({"DIALSTATUS": "BUSY"}, extension="h", env={"uniqueid": ""})
    assert await handler(MemorySession(channel)) == "ERROR"
    assert outbox.calls == []


async def test_end_stage_is_the_h_extension_or_the_hangup_line_only() -> None:
    outbox = RecordingOutbox()
    handler = make_handler(outbox)
    busy = {"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17"}
    # arguments outside `h` (call_log,PROBE before Dial, or mid-call): a start stage, nothing reported
    probe = FakeChannel.synthetic({}, args=["PROBE"], uniqueid="1.1", extension="915550001")
    assert await handler(MemorySession(probe)) == "STARTED"
    ch = FakeChannel.synthetic(busy, args=["BUSY", "17"], uniqueid="1.1", extension="915550001")
    assert await handler(MemorySession(ch)) == "STARTED"
    assert outbox.calls == []
    # the same call's `h` extension then reports its real outcome, once
    end = FakeChannel.synthetic(busy, args=["BUSY", "17"], uniqueid="1.1", extension="h")
    assert await handler(MemorySession(end)) == "QUEUED"
    assert outbox.calls[0][2]["dialStatus"] == "BUSY"
    # no arguments, not `h`, plain script: start stage even though DIALSTATUS is set
    ch = FakeChannel.synthetic(busy, uniqueid="1.2", extension="915550001")
    assert await handler(MemorySession(ch)) == "STARTED"
    # HVcauses script name outside `h`
    ch = FakeChannel.synthetic(
        {}, script="call_log--HVcauses--PRI-----NODEBUG-----17-----BUSY---------------)", uniqueid="1.3"
    )
    assert await handler(MemorySession(ch)) == "QUEUED"
    assert [k for _, k, _ in outbox.calls] == ["1.1", "1.3"]
    assert "PROBE" not in str(outbox.calls)


async def test_start_cache_is_bounded() -> None:
    handler = make_handler(RecordingOutbox(), start_cache_max=100)
    for i in range(150):
        await handler(MemorySession(FakeChannel.synthetic({}, uniqueid=f"1.{i}")))
    assert handler.health()["start_cache"] == 100
    assert handler.health()["start_cache_evicted"] == 50
