"""The daemon as a process following a fake Asterisk's AMI: ps_contacts, /api/ami/extensions and the
retained MQTT presence converge to what Asterisk has, including across an Asterisk restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest

from tests.fakes.ami import FakeAMIServer
from tests.fakes.mqtt_consumer import retained

pytestmark = pytest.mark.system


def rows(daemon) -> dict[str, str]:
    with sqlite3.connect(daemon.workdir / "telephonyd.db") as db:
        return dict(db.execute("SELECT id, status FROM ps_contacts").fetchall())


async def _async(value):
    return value


async def until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


async def test_contacts_and_presence_follow_asterisk(daemon_factory, mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    async with FakeAMIServer(secret="ami-s3cret") as ami:
        ami.add_endpoint("1010")
        ami.add_endpoint("1011")
        first = ami.register("1010")
        daemon = daemon_factory({
            "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5"},
            "mqtt": {"enabled": True, "url": f"mqtt://{host}:{port}", "base_topic": topic_prefix},
        })
        daemon.start()

        async def extensions() -> dict[str, dict]:
            code, data = await daemon.get("/api/ami/extensions")
            assert code == 200, data
            items = data["extensions"] if isinstance(data, dict) else data
            return {item["endpoint"]: item for item in items}

        async def seen(endpoint: str, state: str, online: bool):
            current = (await extensions()).get(endpoint)
            return current if current and current["state"] == state and current["online"] is online else None

        await until(lambda: seen("1010", "available", True), what="1010 available")
        await until(lambda: _async(set(rows(daemon)) == {first.id}), what="the first contact's row")

        second = ami.register("1011")
        await until(lambda: seen("1011", "available", True), what="1011 available")
        ami.set_reachability(second.id, False)
        await until(lambda: seen("1011", "offline", False), what="1011 unreachable")
        await until(lambda: _async(rows(daemon).get(second.id) == "Unreachable"), what="the Unreachable row")

        # Asterisk restarts; meanwhile 1010 unregisters and a new contact appears, with no events seen.
        await ami.shutdown()
        ami.remove_contacts_silently([first.id])
        third = ami.register("1011", uri="sip:1011@127.0.0.1:5999")
        await ami.boot()

        async def converged():
            return set(rows(daemon)) == {second.id, third.id} and await seen("1011", "available", True)

        await until(converged, what="resync after the restart")
        await until(lambda: seen("1010", "offline", False), what="1010 offline after the restart")

        topics = await retained(host, port, topic_prefix)
        agent = json.loads(topics[f"{topic_prefix}/sys1/agents/1011"])
        assert agent["state"] == "available" and agent["online"] is True
        assert topics[f"{topic_prefix}/sys1/status"] == b"online"
        assert daemon.stop() == 0
        after = await retained(host, port, topic_prefix)
        assert after[f"{topic_prefix}/sys1/status"] == b"offline"
    assert "ami-s3cret" not in daemon.logs()
