"""What telephonyd reads from a real Asterisk 20.20.1 with chan_sip enabled (tests/fixtures/asterisk-20.20.1,
see its README): chan_sip's SIPpeers listing and PeerStatus events, ContactStatus, and calls whose Hangup
has no TechCause. Each case parses the recorded bytes with the daemon's own parsers."""

from __future__ import annotations

import pytest

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from telephonyd.contacts.listing import found_nothing, is_unknown_command
from telephonyd.contacts.model import NON_QUALIFIED, REACHABLE, REMOVED, UNREACHABLE, peer_contact_id
from telephonyd.contacts.parse import contact_from_peer_entry, parse_contact_status, parse_peer_status
from tests.fakes.ami_replies import ReplyBook, messages
from tests.fakes.ami_wire import Recordings, split_raw, value_of

REC = Recordings("20.20.1")
BOOK = ReplyBook(version="20.20.1")


def _reply(action: str, where: str) -> list[AMIMessage]:
    return [AMIMessage(pairs) for m in messages(BOOK.reply(action, where=where)) for pairs in split_raw(m + b"\r\n\r\n")]


def test_sippeers_lists_registered_peers_as_contacts() -> None:
    listing = _reply("SIPpeers", "ActionID: r3")
    assert listing[0].get("EventList") == "start" and listing[-1].get("Event") == "PeerlistComplete"
    contacts = [contact_from_peer_entry(m, tech="SIP", reg_server="ast1") for m in listing[1:-1]]
    assert [c.id if c else None for c in contacts] == [peer_contact_id("SIP", p) for p in ("2010", "2011", "2012")]
    first, _, unreachable = contacts
    assert first is not None and unreachable is not None
    assert (first.uri, first.endpoint, first.status, first.roundtrip_usec, first.via_addr, first.via_port) == (
        "sip:2010@127.0.0.1:5230", "2010", REACHABLE, 1000, "127.0.0.1", 5230)
    assert (unreachable.uri, unreachable.status, unreachable.tech) == ("sip:2012@127.0.0.1:5232", UNREACHABLE, "SIP")


def test_sippeers_with_nothing_registered_gives_no_contact() -> None:
    listing = _reply("SIPpeers", "ActionID: z6")
    items = listing[1:-1]
    assert [m.get("IPaddress") for m in items] == ["-none-"] * 3
    assert [contact_from_peer_entry(m, tech="SIP", reg_server=None) for m in items] == [None] * 3


def test_unknown_and_empty_listings() -> None:
    iax = _reply("IAXpeerlist", "Invalid/unknown command")[0]
    assert is_unknown_command(iax)  # chan_iax2 not loaded on the 20.20.1 lab
    nothing = _reply("PJSIPShowContacts", "No Contacts found")[0]
    assert found_nothing(nothing) and not is_unknown_command(nothing)
    sip_peer = _reply("PJSIPShowEndpoint", "Unable to retrieve endpoint 2010")[0]
    assert sip_peer.get("Response") == "Error" and not is_unknown_command(sip_peer)


def test_chan_sip_peer_status_events() -> None:
    events = [AMIMessage(m) for m in REC.events("sip_register_unreachable_unregister.raw", event="PeerStatus")]
    parsed = [parse_peer_status(m) for m in events]
    assert [(p.kind, p.status) for p in parsed if p] == [
        ("registered", None), ("status", REACHABLE), ("status", UNREACHABLE), ("unregistered", None)]
    registered, reachable, unreachable, _ = parsed
    assert registered is not None and registered.id == peer_contact_id("SIP", "2010")
    assert registered.address == "127.0.0.1:5230" and registered.tech == "SIP"
    assert reachable is not None and reachable.roundtrip_usec is None  # 20.20.1 sends no Time on it
    assert unreachable is not None and unreachable.roundtrip_usec is None  # Time: -1


def test_pjsip_contact_status_events() -> None:
    events = [AMIMessage(m) for m in REC.events("pjsip_register_unregister.raw", event="ContactStatus")]
    assert [e.get("ContactStatus") for e in events] == ["NonQualified", "Reachable", "Removed"]
    parsed = [parse_contact_status(e) for e in events]
    assert [p.status for p in parsed if p] == [NON_QUALIFIED, REACHABLE, REMOVED]
    assert {p.id for p in parsed if p} == {"1010;@" + __import__("hashlib").md5(b"sip:1010@127.0.0.1:5210").hexdigest()}
    down = [parse_contact_status(AMIMessage(m))
            for m in REC.events("pjsip_register_uas_down_unreachable.raw", event="ContactStatus")]
    assert [p.status for p in down if p] == [NON_QUALIFIED, UNREACHABLE, REMOVED]
    # PJSIP's own PeerStatus (endpoint level) makes no peer row
    pjsip_peer = REC.events("pjsip_register_unregister.raw", event="PeerStatus")
    assert pjsip_peer and all(parse_peer_status(AMIMessage(m)) is None for m in pjsip_peer)


INTERNAL_SIP = {"direction": "internal", "caller": {"num": "2010", "name": "Phone 2010"}, "agent_endpoint": "2010"}
INTERNAL_PJSIP = {"direction": "internal", "caller": {"num": "1010", "name": "Phone 1010"}, "agent_endpoint": "1010"}

CALLS: dict[str, tuple[list[str], dict]] = {
    "call_sip_answered_caller_hangs_up": (["call.ringing", "call.answered", "call.ended"], {
        **INTERNAL_SIP, "dialed_number": "2011", "callee": {"num": "2011", "name": "Phone 2011"},
        "dial_status": "ANSWER", "hangup_cause": 16, "tech_cause": None, "hung_up_by": "caller"}),
    # chan_sip sends no TechCause even for a 486: the Q.850 cause and the dial status say busy.
    "call_sip_busy_486": (["call.ringing", "call.ended"], {
        **INTERNAL_SIP, "dial_status": "BUSY", "hangup_cause": 17, "tech_cause": None, "hung_up_by": "callee",
        "answered_at": None}),
    "call_pjsip_answered_caller_hangs_up": (["call.ringing", "call.answered", "call.ended"], {
        **INTERNAL_PJSIP, "dialed_number": "1011", "callee": {"num": "1011", "name": "Phone 1011"},
        "dial_status": "ANSWER", "hangup_cause": 16, "tech_cause": None, "hung_up_by": "caller"}),
    "call_pjsip_busy_486": (["call.ringing", "call.ended"], {
        **INTERNAL_PJSIP, "dial_status": "BUSY", "hangup_cause": 17, "tech_cause": "486", "hung_up_by": "callee"}),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_recorded_on_asterisk_20(name: str) -> None:
    kinds, fields = CALLS[name]
    tracker = CallTracker()
    events = []
    recorded = REC.events(f"{name}.raw")
    hangups = [m for m in recorded if value_of(m, "Event") == "Hangup"]
    assert len(hangups) == 2 and all(any(k == "TechCause" for k, _ in m) == (fields["tech_cause"] is not None)
                                     for m in hangups)
    for i, pairs in enumerate(recorded):
        events += tracker.feed(AMIMessage(pairs), 1000.0 + i)
    assert [e.kind for e in events] == kinds
    record = events[-1].snapshot
    for key, value in fields.items():
        assert record[key] == value, key
    assert record["end_reason"] == "hangup" and tracker.calls == {}
