"""The call tracker on real Asterisk 22.10.1 AMI streams (tests/fixtures), and on mutations of them."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallRules, CallTracker
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.ami_wire import recorded_events, split_raw, value_of

CALL_RECORDINGS = ASTERISK_FIXTURES / "ami" / "calls"

CALL_STREAMS = {
    "answered": "01_ANSWER_ami_events.txt",
    "busy": "02_BUSY_ami_events.txt",
    "unavailable": "04_CHANUNAVAIL_ami_events.txt",
    "amd_abort": "07_AMD_SILENCE_ami_events.txt",
    "caller_cancel": "08_CALLER_HANGUP_DURING_START_ami_events.txt",
    "originate_local": "05b_originate_local_agi_ami_events_all.txt",
    "sip_agi": "06b_sip_call_agi_ami_events_all.txt",
}

# What each recorded call must give: event sequence and the call.ended record's fields.
EXPECTED = {
    "answered": (["call.ringing", "call.answered", "call.ended"], {
        "linkedid": "1795237838.1", "dial_status": "ANSWER", "hangup_cause": 16, "tech_cause": None,
        "hung_up_by": "callee", "caller": {"num": "1010", "name": "V1121053000000012345"},
        "callee": {"num": "1011", "name": "Ext 1011"}, "dialed_number": "915555550001", "lead": "12345",
        "agent_endpoint": "1010", "end_reason": "hangup"}),
    "busy": (["call.ended"], {
        "linkedid": "1795237857.3", "dial_status": "BUSY", "hangup_cause": 17, "tech_cause": "486",
        "hung_up_by": "callee", "answered_at": None, "ringing_at": None}),
    "unavailable": (["call.ended"], {
        "linkedid": "1795238008.24", "dial_status": None, "hangup_cause": 3, "tech_cause": "404",
        "hung_up_by": "system", "callee": {"num": "", "name": ""}}),
    "amd_abort": (["call.ringing", "call.ended"], {
        "linkedid": "1795237912.13", "dial_status": "ABORT", "hangup_cause": 16, "hung_up_by": "system",
        "answered_at": None, "dialed_number": "915555550007"}),
    "caller_cancel": (["call.ended"], {
        "linkedid": "1795237939.17", "hangup_cause": 127, "tech_cause": "487", "hung_up_by": "caller",
        "hangup_cause_txt": "Interworking, unspecified"}),
    "originate_local": (["call.answered", "call.ended"], {
        "linkedid": "1795236815.0", "direction": "outbound", "hangup_cause": 0,
        "caller": {"num": "5551234", "name": "Lab Test"}}),
    "sip_agi": (["call.answered", "call.ended"], {
        "linkedid": "1795236855.2", "direction": "internal", "hangup_cause": 16, "hung_up_by": "system",
        "dialed_number": "100", "agent_endpoint": "1010"}),
}


def messages(name: str) -> list[AMIMessage]:
    return [AMIMessage(pairs) for pairs in recorded_events(name)]


def run(tracker: CallTracker, stream: list[AMIMessage], start: float = 1000.0):
    events = []
    for i, message in enumerate(stream):
        events += tracker.feed(message, start + i, i + 1)
    return events


@pytest.mark.parametrize("scenario", sorted(CALL_STREAMS))
def test_recorded_call_gives_its_events_and_record(scenario: str) -> None:
    tracker = CallTracker()
    events = run(tracker, messages(CALL_STREAMS[scenario]))
    kinds, fields = EXPECTED[scenario]
    assert [e.kind for e in events] == kinds
    assert [e.seq for e in events] == list(range(1, len(kinds) + 1))
    record = events[-1].snapshot
    for key, value in fields.items():
        assert record[key] == value, key
    assert record["state"] == "ended"
    assert tracker.calls == {} and tracker._legs == {}  # nothing left behind


def test_answered_call_times_and_legs() -> None:
    events = run(CallTracker(), messages(CALL_STREAMS["answered"]))
    record = events[-1].snapshot
    legs = {leg["uniqueid"]: leg for leg in record["legs"]}
    assert legs["1795237838.1"]["role"] == "caller" and legs["1795237839.2"]["role"] == "callee"
    assert legs["1795237839.2"]["dial_status"] == "ANSWER"
    assert legs["1795237839.2"]["endpoint"] == "1011"
    assert record["started_at"] < record["ringing_at"] < record["answered_at"] < record["ended_at"]
    assert record["talk_s"] > 0 and record["duration_s"] > record["talk_s"]
    # The ringing event was taken before the answer: its snapshot says so.
    assert events[0].snapshot["state"] == "ringing" and events[0].snapshot["answered_at"] is None


def test_rules_set_direction_did_and_variables() -> None:
    rules = CallRules.build(trunks=["1011"], outbound_contexts=["vicilab-out"],
                            variables={"campaign": ["campaign_id"], "did": ["OPTIMIZER_DID"]})
    record = run(CallTracker(rules), messages(CALL_STREAMS["answered"]))[-1].snapshot
    assert record["direction"] == "outbound"
    assert record["agent_endpoint"] == "1010"
    inbound = CallRules.build(trunks=["1010"])
    record = run(CallTracker(inbound), messages(CALL_STREAMS["answered"]))[-1].snapshot
    assert record["direction"] == "inbound"
    assert record["did"] == "915555550001"  # the number the trunk delivered
    assert record["agent_endpoint"] == "1011"  # the answering leg


def test_varset_read_only_for_configured_names() -> None:
    stream = messages(CALL_STREAMS["sip_agi"])
    plain = CallTracker()
    run(plain, stream)
    watched = CallTracker(CallRules.build(variables={"campaign": ["CALL_LOG_SEEN"]}))
    record = run(watched, stream)[-1].snapshot
    assert record["campaign"] == "yes"  # VarSet CALL_LOG_SEEN=yes in the recording
    assert run(CallTracker(), stream)[-1].snapshot["campaign"] == ""


def test_duplicated_stream_gives_each_event_once() -> None:
    stream = messages(CALL_STREAMS["answered"])
    tracker = CallTracker()
    events = run(tracker, [m for m in stream for _ in range(2)])
    assert [e.event_id for e in events] == [
        "1795237838.1:call.ringing:1", "1795237838.1:call.answered:1", "1795237838.1:call.ended:1"]
    # Replaying the whole call after it ended reopens nothing.
    assert run(tracker, stream) == [] and tracker.calls == {}


def test_age_limit_closes_a_call_without_hangup() -> None:
    stream = [m for m in messages(CALL_STREAMS["answered"]) if m.event != "Hangup"]
    tracker = CallTracker(max_age_s=60)
    run(tracker, stream, start=1000.0)
    assert list(tracker.calls) == ["1795237838.1"]
    assert tracker.expire(1059.0) == []
    ended = tracker.expire(1061.0)
    assert [e.kind for e in ended] == ["call.ended"]
    assert ended[0].snapshot["end_reason"] == "expired" and ended[0].snapshot["hung_up_by"] == "unknown"
    assert tracker.calls == {} and tracker._legs == {}


def listing(name: str) -> list[AMIMessage]:
    """The CoreShowChannel items of a recorded CoreShowChannels reply (lab Asterisk 22.10.1)."""
    raw = (CALL_RECORDINGS / name).read_bytes()
    return [AMIMessage(p) for p in split_raw(raw) if value_of(p, "Event") == "CoreShowChannel"]


def test_resync_closes_calls_not_listed_and_adopts_listed_ones() -> None:
    stream = [m for m in messages(CALL_STREAMS["answered"]) if m.event != "Hangup"]
    tracker = CallTracker()
    run(tracker, stream)
    items = listing("56_CoreShowChannels_2_calls.recv.raw")
    assert len(items) == 4
    # A listing taken before the call began does not touch it.
    assert tracker.resync([], 2001.0, before_seq=1) == []
    ended = tracker.resync(items, 2002.0)
    assert [e.snapshot["end_reason"] for e in ended] == ["resync"]
    assert ended[0].snapshot["hung_up_by"] == "unknown"
    # The two calls Asterisk listed are followed from now on, without events of their own yet.
    assert sorted(tracker.calls) == ["1796194650.37", "1796194650.38"]
    call = tracker.get("1796194650.40")  # by the callee leg's uniqueid
    assert call is not None and call.linkedid == "1796194650.37"
    assert call.legs["1796194650.37"].role == "caller" and call.legs["1796194650.40"].role == "callee"
    assert call.answered_at == 2002.0
    # The idle listing after a reconnect closes both.
    assert listing("54_CoreShowChannels_idle.recv.raw") == []
    assert len(tracker.resync([], 2003.0)) == 2 and tracker.calls == {}


def test_resync_marks_unlisted_legs_ended() -> None:
    stream = [m for m in messages(CALL_STREAMS["answered"]) if m.event != "Hangup"]
    tracker = CallTracker()
    run(tracker, stream)
    caller_only = [m for m in messages(CALL_STREAMS["answered"])
                   if m.event == "Newchannel" and m.get("Uniqueid") == "1795237838.1"]
    assert tracker.resync(caller_only, 2000.0) == []
    call = tracker.get("1795237838.1")
    assert call is not None and call.legs["1795237839.2"].ended_at == 2000.0


def test_max_calls_evicts_the_oldest() -> None:
    tracker = CallTracker(max_calls=2)
    for name in ("answered", "busy", "amd_abort"):
        stream = [m for m in messages(CALL_STREAMS[name]) if m.event != "Hangup"]
        events = run(tracker, stream)
    assert len(tracker.calls) == 2
    assert tracker.closed["evicted"] == 1
    assert "1795237838.1" not in tracker.calls
    assert any(e.kind == "call.ended" and e.snapshot["end_reason"] == "evicted" for e in events)


# -- fuzzing: recordings with events dropped, duplicated and reordered within a call ------------------


def _mutate(stream: list[AMIMessage], ops: list[tuple[int, int, int]]) -> list[AMIMessage]:
    out = list(stream)
    for op, a, b in ops:
        if not out:
            break
        i, j = a % len(out), b % len(out)
        if op == 0:
            del out[i]
        elif op == 1:
            out.insert(j, out[i])
        else:
            out[i], out[j] = out[j], out[i]
    return out


ALL_STREAMS = [messages(name) for name in CALL_STREAMS.values()] + [
    [AMIMessage(p) for p in split_raw(path.read_bytes())] for path in sorted(CALL_RECORDINGS.glob("*.ami_events.raw"))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(0, len(ALL_STREAMS) - 1), min_size=1, max_size=6),
    ops=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 500), st.integers(0, 500)), max_size=40),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzzed_streams_never_crash_and_never_leak(picks: list[int], ops, seed: int) -> None:
    rng = random.Random(seed)
    # Interleave several calls (each mutated on its own: reordering stays within a call).
    queues = [_mutate(ALL_STREAMS[p], ops) for p in picks]
    tracker = CallTracker(max_age_s=300, max_calls=4, recent_size=8)
    now = 1000.0
    ended: dict[str, int] = {}
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        now += rng.random()
        for event in tracker.feed(queue.pop(0), now):
            assert event.snapshot["linkedid"] == event.linkedid
            if event.kind == "call.ended":
                ended[event.event_id] = ended.get(event.event_id, 0) + 1
    assert len(tracker.calls) <= 4
    # However broken the stream, the age limit leaves nothing behind.
    tracker.expire(now + 301)
    assert tracker.calls == {} and tracker._legs == {}
    assert len(tracker._recent) <= 8
