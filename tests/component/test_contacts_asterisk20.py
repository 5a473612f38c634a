"""ps_contacts against a fake AMI answering as Asterisk 20.20.1 with chan_sip enabled (only replies and
events recorded from it: tests/fixtures/asterisk-20.20.1). The resync lists PJSIP contacts and chan_sip
peers (SIPpeers; IAXpeerlist answers Invalid/unknown command); a registered chan_sip peer is one row
``SIP/<peer>;@<md5>`` (telephonyd.contacts.model), kept by PeerStatus events between resyncs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from telephonyd.contacts.model import contact_id, peer_contact_id
from tests.component.contacts_rig import SECRET, contacts_rig
from tests.fakes.ami import FakeAMIServer, FakeContact, FakeSipPeer
from tests.fakes.ami_wire import value_of

SIP_2010 = peer_contact_id("SIP", "2010")
SIP_2011 = peer_contact_id("SIP", "2011")
SIP_2012 = peer_contact_id("SIP", "2012")
PJSIP_1010 = contact_id("1010", "sip:1010@127.0.0.1:5210")
PJSIP_1012 = contact_id("1012", "sip:1012@127.0.0.1:5212")


@pytest.fixture
async def fake20() -> AsyncIterator[FakeAMIServer]:
    async with FakeAMIServer(secret=SECRET, bad_login_delay_s=0.05, version="20.20.1") as fake:
        yield fake


def lab_state(fake: FakeAMIServer) -> None:
    """The state of asterisk-20.20.1/ami/actions/02_registered_one_unreachable.txt (less 1011)."""
    soon = int(time.time()) + 600
    fake.add_contacts_silently([
        FakeContact("1010", "1010", "sip:1010@127.0.0.1:5210", status="Reachable", rtt_usec=1559, expiration_time=soon),
        FakeContact("1012", "1012", "sip:1012@127.0.0.1:5212", status="Unreachable", expiration_time=soon),
    ])
    fake.sip_peers_silently({"2010": "127.0.0.1:5230"})
    fake.add_sip_peer("2011")
    fake.sip_peers["2012"] = FakeSipPeer("2012", "127.0.0.1:5232", "UNREACHABLE")


async def test_resync_lists_pjsip_contacts_and_chan_sip_peers(sqlite_url: str, fake20: FakeAMIServer) -> None:
    async with contacts_rig(sqlite_url, fake=fake20, setup=lab_state) as rig:
        await rig.synced()
        rows = await rig.rows()
        assert set(rows) == {PJSIP_1010, PJSIP_1012, SIP_2010, SIP_2012}  # 2011 is not registered
        peer = rows[SIP_2010]
        assert (peer["uri"], peer["endpoint"], peer["status"], peer["roundtrip_usec"], peer["reg_server"]) == (
            "sip:2010@127.0.0.1:5230", "2010", "Reachable", 1000, "ast1")
        assert (peer["via_addr"], peer["via_port"], peer["expiration_time"]) == ("127.0.0.1", 5230, None)
        assert rows[SIP_2012]["status"] == "Unreachable" and rows[PJSIP_1012]["status"] == "Unreachable"
        result = rig.sync.last_resync or {}
        assert result["sources"] == ["PJSIPShowContacts", "SIPpeers"] and result["total"] == 4
        assert [value_of(a, "Action") for a in rig.fake.actions][-3:] == ["PJSIPShowContacts", "SIPpeers", "IAXpeerlist"]
        assert rig.sync.health()["ok"]
        by_endpoint = rig.sync.contacts_by_endpoint()
        assert [c.id for c in by_endpoint["2010"]] == [SIP_2010]


async def test_chan_sip_peer_register_unreachable_unregister_converge(sqlite_url: str, fake20: FakeAMIServer) -> None:
    async with contacts_rig(sqlite_url, fake=fake20, setup=lab_state) as rig:
        await rig.synced()
        rig.fake.sip_register("2011", "127.0.0.1:5231")
        rows = await rig.wait_rows(lambda r: r.get(SIP_2011, {}).get("status") == "Reachable")
        assert (rows[SIP_2011]["uri"], rows[SIP_2011]["endpoint"]) == ("sip:2011@127.0.0.1:5231", "2011")
        rig.fake.sip_unreachable("2011")
        await rig.wait_rows(lambda r: r.get(SIP_2011, {}).get("status") == "Unreachable")
        rig.fake.sip_unregister("2011")
        rows = await rig.wait_rows(lambda r: SIP_2011 not in r)
        assert SIP_2010 in rows
        # A resync agrees with what the events built.
        again = await rig.sync.resync()
        assert (again["added"], again["removed"], again["total"]) == (0, 0, 4)


async def test_pjsip_register_on_20_starts_non_qualified(sqlite_url: str, fake20: FakeAMIServer) -> None:
    """20.20.1's new contact: ContactStatus NonQualified, then Reachable once qualified (the event
    templates are 20.20.1's: pjsip_register_unregister.raw)."""
    async with contacts_rig(sqlite_url, fake=fake20) as rig:
        await rig.synced()
        contact = rig.fake.register("1011", qualify=False)
        rows = await rig.wait_rows(lambda r: r.get(contact.id, {}).get("expiration_time") is not None)
        assert rows[contact.id]["status"] == "NonQualified"
        assert [value_of(a, "Endpoint") for a in rig.fake.actions_named("PJSIPShowEndpoint")] == ["1011"]
        rig.fake.set_reachability(contact.id, True)
        await rig.wait_rows(lambda r: r[contact.id]["status"] == "Reachable")
        rig.fake.unregister(contact.id)
        await rig.wait_rows(lambda r: contact.id not in r)


async def test_reconnect_resyncs_chan_sip_changes_made_while_disconnected(sqlite_url: str,
                                                                         fake20: FakeAMIServer) -> None:
    async with contacts_rig(sqlite_url, fake=fake20, setup=lab_state) as rig:
        await rig.synced()
        rig.fake.sip_peers["2010"].address = ""  # unregistered while we were away (no event seen)
        rig.fake.sip_peers_silently({"2011": "127.0.0.1:5231"})
        rig.fake.drop_connections()
        rows = await rig.wait_rows(lambda r: SIP_2010 not in r and SIP_2011 in r)
        assert rows[SIP_2011]["status"] == "Reachable" and SIP_2012 in rows and PJSIP_1010 in rows
