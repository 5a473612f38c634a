"""Contact ids, statuses and the parsing of recorded AMI messages into contacts (pure)."""

from __future__ import annotations

import pytest

from telephonyd.ami.framing import parse_messages, split_banner
from telephonyd.ami.message import AMIMessage
from telephonyd.contacts.model import (
    Contact,
    contact_id,
    normalize_bool,
    normalize_status,
    peer_contact_id,
)
from telephonyd.contacts.parse import (
    contact_from_list_item,
    contact_from_peer_entry,
    contact_from_status_detail,
    parse_contact_status,
    parse_peer_status,
)
from tests.fakes.ami_wire import AMI_RECORDINGS, received_stream


def recorded(name: str) -> list[AMIMessage]:
    data = (AMI_RECORDINGS / name).read_bytes()
    return parse_messages(data)[0]


def listing_messages() -> list[AMIMessage]:
    _, data = split_banner(received_stream(AMI_RECORDINGS / "03_PJSIPShowContacts_registered.txt"))
    return parse_messages(data)[0]


def test_contact_id_is_aor_and_md5_of_uri_as_asterisk_computes_it() -> None:
    # 03_PJSIPShowContacts_registered.txt: ObjectName of the contact of sip:1010@127.0.0.1:5070
    assert contact_id("1010", "sip:1010@127.0.0.1:5070") == "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e"
    assert contact_id("1010", "sip:1010@127.0.0.1:5071") != contact_id("1010", "sip:1010@127.0.0.1:5070")


def test_every_recorded_contact_status_yields_the_listed_id() -> None:
    listed = {m.get("ObjectName") for m in listing_messages() if m.event == "ContactList"}
    events = [parse_contact_status(m) for m in recorded("02_register_ami_events_all.txt") if m.event == "ContactStatus"]
    assert events and all(e is not None for e in events)
    assert {e.id for e in events if e} == listed
    statuses = [(e.status, e.roundtrip_usec) for e in events if e]
    assert statuses == [("NonQualified", 0), ("Reachable", 477), ("Removed", 0)]


@pytest.mark.parametrize(("wire", "expected"), [
    ("NonQualified", "NonQualified"), ("Created", "NonQualified"), ("Reachable", "Reachable"),
    ("Unreachable", "Unreachable"), ("Unknown", "Unknown"), ("Removed", "Removed"), ("Updated", "Updated"),
    ("reachable", None), ("Unqualified", None), ("NotReachable", None), ("", None), (None, None),
])
def test_status_values_compare_exactly(wire: str | None, expected: str | None) -> None:
    assert normalize_status(wire) == expected


def test_booleans_map_to_yes_no() -> None:
    assert [normalize_bool(v) for v in ("no", "false", "0", "yes", "true", "1", "", None, "maybe")] == [
        "no", "no", "no", "yes", "yes", "yes", None, None, None]


def test_recorded_contact_list_item() -> None:
    item = next(m for m in listing_messages() if m.event == "ContactList")
    contact = contact_from_list_item(item, reg_server="ast1")
    assert contact == Contact(
        "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e", endpoint="1010", uri="sip:1010@127.0.0.1:5070",
        status="Reachable", roundtrip_usec=833, expiration_time=1795236887, qualify_frequency=5,
        qualify_timeout=3.0, user_agent="sipp-lab", via_addr="127.0.0.1", via_port=5070,
        call_id="1-19622@127.0.0.1", path=None, outbound_proxy=None, authenticate_qualify="no",
        prune_on_boot="no", qualify_2xx_only="no", reg_server="ast1")
    assert contact is not None and contact.aor == "1010" and contact.tech == "PJSIP"
    assert contact_from_list_item(item, reg_server=None).reg_server is None  # type: ignore[union-attr]


def test_recorded_contact_status_detail_matches_the_list_item() -> None:
    messages = listing_messages()
    detail = contact_from_status_detail(next(m for m in messages if m.event == "ContactStatusDetail"),
                                        reg_server="ast1")
    listed = contact_from_list_item(next(m for m in messages if m.event == "ContactList"), reg_server="ast1")
    assert detail is not None and listed is not None
    assert detail.id == listed.id and detail.via_addr == "127.0.0.1" and detail.via_port == 5070
    assert detail.expiration_time == listed.expiration_time and detail.roundtrip_usec == 433
    # Early 13.x sent no ID: it is computed from AOR and URI.
    no_id = AMIMessage([(k, v) for k, v in next(m for m in messages if m.event == "ContactStatusDetail") if k != "ID"])
    assert contact_from_status_detail(no_id, reg_server=None).id == listed.id  # type: ignore[union-attr]


def test_not_reachable_listing_has_no_round_trip() -> None:
    item = AMIMessage([("Event", "ContactList"), ("ObjectName", "1011;@abc"), ("Uri", "sip:1011@h"),
                       ("Status", "Unreachable"), ("RoundtripUsec", "N/A"), ("ViaAddr", "[::1]")])
    contact = contact_from_list_item(item, reg_server="x")
    assert contact is not None and contact.roundtrip_usec is None and contact.status == "Unreachable"


def test_pjsip_peer_status_is_endpoint_level_and_ignored() -> None:
    peers = [m for m in recorded("02_register_ami_events_all.txt") if m.event == "PeerStatus"]
    assert peers and all(parse_peer_status(m) is None for m in peers)


def test_chan_sip_and_iax2_peer_status() -> None:
    def peer(**fields: str) -> AMIMessage:
        return AMIMessage([("Event", "PeerStatus"), *fields.items()])

    registered = parse_peer_status(peer(ChannelType="SIP", Peer="SIP/2001", PeerStatus="Registered",
                                        Address="10.0.0.5:5062"))
    assert registered is not None and registered.kind == "registered" and registered.address == "10.0.0.5:5062"
    assert registered.id == peer_contact_id("SIP", "2001") and registered.id.startswith("SIP/2001;@")
    lagged = parse_peer_status(peer(Peer="SIP/2001", PeerStatus="Lagged", Time="900"))
    assert lagged is not None and (lagged.status, lagged.roundtrip_usec) == ("Reachable", 900_000)
    iax = parse_peer_status(peer(Peer="IAX2/3001", PeerStatus="Registered", Address="10.0.0.9", Port="4569"))
    assert iax is not None and iax.address == "10.0.0.9:4569"
    assert parse_peer_status(peer(Peer="SIP/2001", PeerStatus="Rejected", Cause="AUTH_SECRET_FAILED")) is None
    assert parse_peer_status(peer(Peer="SIP/2001", PeerStatus="Unregistered", Cause="Expired")).kind == "unregistered"  # type: ignore[union-attr]


def test_peer_entries() -> None:
    def entry(**fields: str) -> AMIMessage:
        return AMIMessage([("Event", "PeerEntry"), *fields.items()])

    sip = contact_from_peer_entry(entry(ObjectName="2001", Channeltype="SIP", IPaddress="10.0.0.5", IPport="5062",
                                        Dynamic="yes", Status="OK (12 ms)"), tech="SIP", reg_server="ast1")
    assert sip is not None and sip.tech == "SIP" and sip.endpoint == "2001"
    assert (sip.uri, sip.status, sip.roundtrip_usec) == ("sip:2001@10.0.0.5:5062", "Reachable", 12_000)
    assert contact_from_peer_entry(entry(ObjectName="2002", IPaddress="-none-", Dynamic="yes", Status="UNKNOWN"),
                                   tech="SIP", reg_server="ast1") is None
    assert contact_from_peer_entry(entry(ObjectName="trunk", IPaddress="1.2.3.4", Dynamic="no", Status="OK (1 ms)"),
                                   tech="SIP", reg_server="ast1") is None
    iax = contact_from_peer_entry(entry(ObjectName="3001", Channeltype="IAX", IPaddress="10.0.0.9", IPport="4569",
                                        Dynamic="yes", Status="UNREACHABLE"), tech="IAX2", reg_server="ast1")
    assert iax is not None and iax.uri == "iax2:3001@10.0.0.9:4569" and iax.status == "Unreachable"
