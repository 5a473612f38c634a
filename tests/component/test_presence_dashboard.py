"""The Mayday dashboard contract beside the native payloads: a python-socketio AsyncClient gets
agents:snapshot then agent:status (and the extension:* events); the admin token is required on the
Socket.IO connect; /api/ami/extensions, /api/ami/status and /ws/agents in the dashboard shape."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import socketio

from tests.component.presence_rig import ADMIN_TOKEN, eventually, presence_rig
from tests.fakes.ami import FakeAMIServer


def phones(ami: FakeAMIServer) -> None:
    ami.add_endpoint("1010")
    ami.add_endpoint("1011")


async def test_socketio_client_gets_the_snapshot_then_agent_status(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=phones) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        received: list[tuple[str, dict]] = []
        client = socketio.AsyncClient(reconnection=False)
        for name in ("agents:snapshot", "agent:status", "extension:endpointStatus",
                     "extension:availability_changed", "extension:contactStatus"):
            client.on(name, lambda data, name=name: received.append((name, data)))
        await client.connect(rig.base_url, auth={"token": ADMIN_TOKEN}, transports=["websocket"],
                             wait_timeout=5)
        try:
            await eventually(lambda: received and received[0][0] == "agents:snapshot")
            snapshot = received[0][1]
            assert {"extension": "1010", "status": "Registered", "online": True} in snapshot["agents"]
            assert {"extension": "1011", "status": "Offline", "online": False} in snapshot["agents"]
            assert isinstance(snapshot["ts"], int)

            contact = rig.ami.register("1011")
            await eventually(lambda: ("agent:status", "1011") in [(n, d.get("extension")) for n, d in received])
            status = next(d for n, d in received if n == "agent:status" and d["extension"] == "1011")
            assert status["status"] == "Registered" and status["online"] is True and isinstance(status["ts"], int)
            await eventually(lambda: any(n == "extension:contactStatus" and d["contact"] == contact.id
                                         for n, d in received))
            rig.ami.set_custom_device("Custom:DND1011", "BUSY")
            await eventually(lambda: any(n == "extension:availability_changed" and d["availability"] == "DND"
                                         and d["extension"] == "1011" for n, d in received))
            rig.ami.unregister(contact.id)
            await eventually(lambda: any(n == "agent:status" and d == {**d, "extension": "1011", "status": "Offline",
                                                                       "online": False} for n, d in received))
            assert [n for n, _ in received].index("agents:snapshot") == 0
        finally:
            await client.disconnect()


async def test_socketio_connect_needs_the_admin_token(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=phones) as rig:
        for auth in (None, {"token": "wrong"}):
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(rig.base_url, auth=auth, transports=["websocket"], wait_timeout=5)
            await client.disconnect()
        header = socketio.AsyncClient(reconnection=False)  # a Bearer header works too
        got: list[str] = []
        header.on("agents:snapshot", lambda _d: got.append("snapshot"))
        await header.connect(rig.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             transports=["websocket"], wait_timeout=5)
        await eventually(lambda: got == ["snapshot"])
        await header.disconnect()


async def test_dashboard_shapes_side_by_side_with_the_native_ones(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=phones) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        status, body = await rig.api("GET", "/api/ami/extensions?shape=dashboard")
        assert status == 200 and set(body) == {"1010", "1011"}
        assert body["1010"]["isRegistered"] is True and body["1010"]["status"] == "Available"
        assert body["1011"] == {**body["1011"], "isRegistered": False, "status": "Offline"}
        assert body["1010"]["lastSeen"].endswith("Z")
        status, native = await rig.api("GET", "/api/ami/extensions")
        assert status == 200 and native["success"] is True and {e["endpoint"] for e in native["extensions"]} == {"1010", "1011"}
        status, body = await rig.api("GET", "/api/ami/status?shape=dashboard")
        assert status == 200 and body["connected"] is True and body["lastDbSync"].endswith("Z")
        assert body["cache"] == {**body["cache"], "extensions": 2, "registered": 1, "seeded": True}
        status, _ = await rig.api("GET", "/api/ami/status?shape=other")
        assert status == 400
        async with aiohttp.ClientSession() as http:
            async with http.get(rig.base_url + "/api/ami/extensions?shape=dashboard") as resp:
                assert resp.status == 401  # the admin token still applies
            async with http.ws_connect(rig.base_url + "/ws/agents?shape=dashboard", headers=rig.auth) as ws:
                first = await asyncio.wait_for(ws.receive_json(), 5)
                assert first["type"] == "agents:snapshot" and isinstance(first["ts"], int)
                rig.ami.register("1011")
                while True:
                    message = await asyncio.wait_for(ws.receive_json(), 5)
                    if message["type"] == "agent:status":
                        break
                assert message == {**message, "extension": "1011", "status": "Registered", "online": True}


async def test_socketio_browser_origins_are_the_configured_ones(sqlite_url) -> None:
    from telephonyd.config import PresenceConfig

    config = PresenceConfig(socketio_cors_origins=["https://crm.example"])
    async with presence_rig(sqlite_url, setup=phones, presence=config) as rig, aiohttp.ClientSession() as http:
        url = rig.base_url + "/socket.io/?EIO=4&transport=polling"
        async with http.get(url, headers={"Origin": "https://crm.example"}) as resp:
            assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://crm.example"
        async with http.get(url, headers={"Origin": "https://elsewhere.example"}) as resp:
            assert resp.status == 400
