"""Presence fed by a fake Asterisk over a real AMI socket (through the real AMI client and contacts sync):
register / unreachable / unregister, calls with the Hangup cross-check, wrap-up, resync after a
reconnect (seq keeps growing, retired endpoints), the /api/ami/* routes and the WebSocket."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
from aiohttp import WSMsgType

from telephonyd.config import PresenceConfig
from telephonyd.presence.state import AgentStatus
from tests.component.presence_rig import eventually, presence_rig
from tests.fakes.ami import FakeAMIServer, channel_event


def two_phones(ami: FakeAMIServer) -> None:
    ami.add_endpoint("1010")
    ami.add_endpoint("1011")


def seqs(rig, endpoint: str) -> list[int]:
    return [e.seq for e in rig.events if isinstance(e, AgentStatus) and e.endpoint == endpoint]


async def test_register_unreachable_unregister(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones) as rig:
        assert rig.agent("1010") == ("offline", False)
        assert rig.agent("1011") == ("offline", False)

        contact = rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))

        rig.ami.set_reachability(contact.id, False)
        await eventually(lambda: rig.agent("1010") == ("offline", False))

        rig.ami.set_reachability(contact.id, True)
        await eventually(lambda: rig.agent("1010") == ("available", True))

        rig.ami.unregister(contact.id)
        await eventually(lambda: rig.agent("1010") == ("offline", False))

        assert rig.agent("1011") == ("offline", False)
        numbers = seqs(rig, "1010")
        assert numbers == sorted(set(numbers))
        states = [(e.state, e.online) for e in rig.events if isinstance(e, AgentStatus) and e.endpoint == "1010"]
        assert ("available", True) in states and states[-1] == ("offline", False)
        # dedupe: never the same (state, online) twice in a row
        assert all(a != b for a, b in itertools.pairwise(states))


async def test_call_states_and_the_hangup_cross_check(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        rig.ami.emit(channel_event("Newchannel", "PJSIP/1010-00000007", "1795236855.7"))
        rig.ami.set_device_state("1010", "RINGING")
        await eventually(lambda: rig.agent("1010") == ("ringing", True))
        rig.ami.set_device_state("1010", "INUSE")
        await eventually(lambda: rig.agent("1010") == ("on_call", True))
        rig.ami.set_device_state("1010", "ONHOLD")
        await eventually(lambda: rig.agent("1010") == ("on_hold", True))
        rig.ami.set_device_state("1010", "INUSE")
        await eventually(lambda: rig.agent("1010") == ("on_call", True))
        count = len(rig.events)
        # The last channel hangs up: available at once, before Asterisk's own DeviceStateChange.
        rig.ami.emit(channel_event("Hangup", "PJSIP/1010-00000007", "1795236855.7", Cause="16"))
        await eventually(lambda: rig.agent("1010") == ("available", True))
        rig.ami.set_device_state("1010", "NOT_INUSE")
        ping = await rig.client.action({"Action": "Ping"})  # everything before it has been read
        assert ping.is_success
        assert len(rig.events) == count + 1  # the DeviceStateChange repeated a known state: no event


async def test_wrap_up_then_available_on_its_timer(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones, presence=PresenceConfig(wrap_up_s=0.3)) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        rig.ami.set_device_state("1010", "INUSE")
        await eventually(lambda: rig.agent("1010") == ("on_call", True))
        loop = asyncio.get_running_loop()
        rig.ami.set_device_state("1010", "NOT_INUSE")
        await eventually(lambda: rig.agent("1010") == ("wrap_up", True))
        started = loop.time()
        await eventually(lambda: rig.agent("1010") == ("available", True), timeout=5)
        assert loop.time() - started >= 0.2


async def test_resync_after_reconnect_keeps_seq_growing_and_retires_the_gone(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        before = rig.presence.agent("1010").seq
        seeds = rig.presence.seeds
        # While the AMI link is down, 1010 goes on a call and 1011 is deleted from pjsip.conf.
        rig.ami.endpoints["1010"].device_state = "INUSE"
        del rig.ami.endpoints["1011"]
        rig.ami.drop_connections()
        await rig.seeded(seeds)
        assert rig.agent("1010") == ("on_call", True)
        assert rig.presence.agent("1010").seq > before
        assert rig.agent("1011") is None
        assert [e.endpoint for e in rig.events if e.kind == "retired"] == ["1011"]


async def test_api_routes(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones) as rig:
        contact = rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))

        status, body = await rig.api("GET", "/api/ami/status")
        assert status == 200 and body["success"] is True
        assert body["connected"] is True and body["node_id"] == "ast1"
        assert body["agents"] == 2 and body["contacts"] == 1 and body["online"] == 1
        assert body["last_event_at"].endswith("Z")

        status, body = await rig.api("GET", "/api/ami/extensions")
        assert status == 200
        by_endpoint = {e["endpoint"]: e for e in body["extensions"]}
        assert by_endpoint["1010"]["state"] == "available" and by_endpoint["1010"]["online"] is True
        assert [c["id"] for c in by_endpoint["1010"]["contacts"]] == [contact.id]
        assert by_endpoint["1011"]["contacts"] == []

        status, body = await rig.api("GET", "/api/ami/extensions/1010")
        assert status == 200 and body["extension"]["contacts"][0]["uri"] == contact.uri
        status, body = await rig.api("GET", "/api/ami/extensions/9999")
        assert status == 404 and body == {"success": False, "error": "unknown extension", "field": "ext"}

        rig.ami.set_device_state("1010", "INUSE")
        rig.ami.endpoints["1010"].device_state = "NOT_INUSE"  # Asterisk's truth changes without an event
        await eventually(lambda: rig.agent("1010") == ("on_call", True))
        status, body = await rig.api("POST", "/api/ami/refresh")
        assert status == 200 and body["success"] is True
        assert body["presence"]["source"] == "DeviceStateList" and body["presence"]["changed"] == ["1010"]
        assert body["contacts"]["total"] == 1
        assert rig.agent("1010") == ("available", True)

        async with aiohttp.ClientSession() as http, http.get(rig.base_url + "/api/ami/extensions") as resp:
            assert resp.status == 401

        await rig.client.stop(2.0)
        status, body = await rig.api("POST", "/api/ami/refresh")
        assert status == 503 and body["success"] is False and "not connected" in body["error"]


async def test_websocket_snapshot_then_deltas(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=two_phones) as rig, aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(rig.base_url + "/ws/agents", headers=headers)
            assert refused.value.status == 401
        async with http.ws_connect(rig.base_url + "/ws/agents", headers=rig.auth) as ws:
            snapshot = await asyncio.wait_for(ws.receive_json(), 5)
            assert snapshot["type"] == "agents:snapshot"
            assert {a["endpoint"]: (a["state"], a["online"]) for a in snapshot["agents"]} == {
                "1010": ("offline", False), "1011": ("offline", False)}
            deltas: list[dict] = []

            async def until_delta(state: str, online: bool) -> None:
                while not deltas or (deltas[-1]["state"], deltas[-1]["online"]) != (state, online):
                    message = await asyncio.wait_for(ws.receive(), 5)
                    assert message.type == WSMsgType.TEXT
                    deltas.append(message.json())

            contact = rig.ami.register("1010")
            await until_delta("available", True)
            rig.ami.set_device_state("1010", "RINGING")
            await until_delta("ringing", True)
            rig.ami.unregister(contact.id)
            await until_delta("offline", False)
            assert all(d["type"] == "agent:status" and isinstance(d["online"], bool) for d in deltas)
            assert [d["seq"] for d in deltas] == sorted({d["seq"] for d in deltas})
            seen = {a["endpoint"]: a["seq"] for a in snapshot["agents"]}
            expected = [e.as_dict() for e in rig.events
                        if isinstance(e, AgentStatus) and e.seq > seen.get(e.endpoint, 0)]
            assert [{k: v for k, v in d.items() if k != "type"} for d in deltas] == expected
