"""One register / unreachable / unregister sequence from a fake Asterisk, and four views of it that
must agree after every step: the ps_contacts table (ContactsSync on SQLite and on MariaDB),
``GET /api/ami/extensions``, the retained MQTT topics (real Mosquitto) and the /ws/agents stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from telephonyd.config import MQTTConfig
from telephonyd.contacts.schema import ps_contacts
from telephonyd.presence.state import UNUSABLE_CONTACT_STATUSES
from tests.component.presence_rig import Rig, eventually, presence_rig
from tests.fakes.ami import FakeAMIServer
from tests.fakes.mqtt_consumer import retained

pytestmark = pytest.mark.mosquitto


def phones(ami: FakeAMIServer) -> None:
    for name in ("1010", "1011", "1012"):
        ami.add_endpoint(name)


class WSView:
    """The agents as a /ws/agents client sees them: the snapshot, then every delta applied."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.agents: dict[str, dict[str, Any]] = {}
        self.messages = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        snapshot = await asyncio.wait_for(self.ws.receive_json(), 5)
        assert snapshot["type"] == "agents:snapshot"
        self.agents = {a["endpoint"]: a for a in snapshot["agents"]}
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = message.json()
            self.messages += 1
            if data["type"] == "agent:status":
                previous = self.agents.get(data["endpoint"])
                assert previous is None or data["seq"] > previous["seq"], "a delta went back in seq"
                assert isinstance(data["online"], bool)
                self.agents[data["endpoint"]] = {k: v for k, v in data.items() if k != "type"}
            elif data["type"] == "agent:removed":
                self.agents.pop(data["endpoint"], None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def table_rows(rig: Rig) -> dict[str, list[tuple[str, str | None]]]:
    async with rig.store.connect() as conn:
        rows = (await conn.execute(sa.select(ps_contacts.c.endpoint, ps_contacts.c.id, ps_contacts.c.status))).all()
    out: dict[str, list[tuple[str, str | None]]] = {}
    for endpoint, cid, status in rows:
        out.setdefault(endpoint, []).append((cid, status))
    return {k: sorted(v) for k, v in out.items()}


async def views(rig: Rig, ws: WSView, host: str, port: int, prefix: str) -> dict[str, Any]:
    status, body = await rig.api("GET", "/api/ami/extensions")
    assert status == 200
    api = {e["endpoint"]: e for e in body["extensions"]}
    topics = await retained(host, port, prefix)
    agents_prefix = f"{prefix}/ast1/agents/"
    mqtt = {t[len(agents_prefix):]: json.loads(p) for t, p in topics.items() if t.startswith(agents_prefix)}
    return {"api": api, "mqtt": mqtt, "ws": dict(ws.agents), "table": await table_rows(rig),
            "status": topics.get(f"{prefix}/ast1/status")}


def disagreements(v: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    published = ("endpoint", "state", "online", "since", "seq")
    api = {k: {f: e[f] for f in published} for k, e in v["api"].items()}
    if api != v["mqtt"]:
        problems.append(f"api {api} != mqtt {v['mqtt']}")
    if api != v["ws"]:
        problems.append(f"api {api} != ws {v['ws']}")
    if v["status"] != b"online":
        problems.append(f"status topic {v['status']!r}")
    for endpoint, extension in v["api"].items():
        api_contacts = sorted((c["id"], c["status"]) for c in extension["contacts"])
        if api_contacts != v["table"].get(endpoint, []):
            problems.append(f"{endpoint}: api contacts {api_contacts} != ps_contacts {v['table'].get(endpoint)}")
        online = any(status not in UNUSABLE_CONTACT_STATUSES for _, status in v["table"].get(endpoint, []))
        if extension["online"] != online:
            problems.append(f"{endpoint}: online {extension['online']} but ps_contacts says {online}")
    return problems


async def agree(rig: Rig, ws: WSView, host: str, port: int, prefix: str, expected: dict[str, tuple[str, bool]]) -> None:
    """Wait until presence shows ``expected`` and every view agrees with it."""
    await eventually(lambda: all(rig.agent(e) == s for e, s in expected.items()))
    last: list[str] = []

    async def settled() -> bool:
        nonlocal last
        current = await views(rig, ws, host, port, prefix)
        last = disagreements(current)
        states = {e: (a["state"], a["online"]) for e, a in current["api"].items()}
        if any(states.get(e) != s for e, s in expected.items()):
            last.append(f"api states {states} != expected {expected}")
        return not last

    try:
        async with asyncio.timeout(10):
            while not await settled():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail("views disagree: " + "; ".join(last))


async def test_all_views_agree_through_register_unreachable_unregister(store_url, mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    mqtt = MQTTConfig(enabled=True, url=f"mqtt://{host}:{port}", base_topic=topic_prefix, backoff_max_s=1.0,
                      client_id=f"td-{topic_prefix.rsplit('/', 1)[-1]}")
    async with presence_rig(store_url, setup=phones, mqtt=mqtt) as rig, aiohttp.ClientSession() as http:
        await eventually(lambda: rig.mqtt.health()["state"] == "connected")
        async with http.ws_connect(rig.base_url + "/ws/agents", headers=rig.auth) as socket:
            ws = WSView(socket)
            await ws.start()
            try:
                check = lambda expected: agree(rig, ws, host, port, topic_prefix, expected)
                await check({"1010": ("offline", False), "1011": ("offline", False), "1012": ("offline", False)})

                a = rig.ami.register("1010")
                b = rig.ami.register("1011", qualify=False)
                await check({"1010": ("available", True), "1011": ("available", True)})

                rig.ami.set_reachability(a.id, False)
                await check({"1010": ("offline", False), "1011": ("available", True)})

                second = rig.ami.register("1010", uri="sip:1010@127.0.0.1:5999")  # a second phone on 1010
                # Asterisk brings the endpoint back (PeerStatus Reachable, DeviceStateChange NOT_INUSE)
                # when one of its contacts becomes usable again; the fake only does it for a first contact.
                rig.ami.set_device_state("1010", "NOT_INUSE")
                await check({"1010": ("available", True)})

                rig.ami.set_device_state("1011", "INUSE")
                await check({"1011": ("on_call", True)})

                rig.ami.unregister(b.id)
                rig.ami.unregister(second.id)
                await check({"1010": ("offline", False), "1011": ("offline", False)})

                rig.ami.set_reachability(a.id, True)
                await check({"1010": ("available", True), "1011": ("offline", False), "1012": ("offline", False)})

                # 1012 is deleted from Asterisk's configuration; a forced resync retires it everywhere.
                del rig.ami.endpoints["1012"]
                status, body = await rig.api("POST", "/api/ami/refresh")
                assert status == 200 and body["presence"]["retired"] == ["1012"]
                await check({"1010": ("available", True), "1011": ("offline", False)})
                final = await views(rig, ws, host, port, topic_prefix)
                assert set(final["mqtt"]) == set(final["ws"]) == set(final["api"]) == {"1010", "1011"}
            finally:
                await ws.stop()
