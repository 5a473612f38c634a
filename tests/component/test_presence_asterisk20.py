"""Agent presence of chan_sip phones against a fake AMI answering as Asterisk 20.20.1 (chan_sip enabled,
queue ``sales`` loaded: only its recorded replies and events, tests/fixtures/asterisk-20.20.1). A chan_sip
peer is an agent like a PJSIP endpoint: online while its ``SIP/<peer>`` row is registered and reachable."""

from __future__ import annotations

from tests.component.presence_rig import AMI_SECRET, eventually, presence_rig
from tests.fakes.ami import FakeAMIServer


async def started_fake() -> FakeAMIServer:
    fake = FakeAMIServer(secret=AMI_SECRET, version="20.20.1")
    await fake.start()
    fake.queues = {"sales": {"PJSIP/1010": (False, "")}}  # app_queue is loaded on the 20.20.1 lab
    fake.add_endpoint("1010")
    fake.sip_peers_silently({"2010": "127.0.0.1:5230"})
    fake.add_sip_peer("2011")
    return fake


async def test_chan_sip_peers_online_from_the_seed_then_from_peer_status(sqlite_url) -> None:
    async with presence_rig(sqlite_url, server=await started_fake()) as rig:
        await eventually(lambda: rig.agent("2010") == ("available", True))
        assert rig.agent("2011") in (None, ("offline", False))
        assert rig.agent("1010") == ("offline", False)

        rig.ami.sip_register("2011", "127.0.0.1:5231")
        await eventually(lambda: rig.agent("2011") == ("available", True))
        rig.ami.sip_unreachable("2011")
        await eventually(lambda: rig.agent("2011") == ("offline", False))
        rig.ami.sip_register("2011", "127.0.0.1:5231")
        await eventually(lambda: rig.agent("2011") == ("available", True))
        rig.ami.sip_unregister("2011")
        await eventually(lambda: rig.agent("2011") == ("offline", False))
        assert rig.agent("2010") == ("available", True)

        status, body = await rig.api("GET", "/api/ami/extensions")
        assert status == 200 and "2010" in str(body)
