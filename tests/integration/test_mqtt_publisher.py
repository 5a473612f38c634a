"""The MQTT publisher against a real Mosquitto: retained topics, deltas, last will, clean offline,
republish after a reconnect, retired endpoints cleared, a broker outage that never blocks presence."""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telephonyd.config import MQTTConfig
from telephonyd.mqtt import MQTTPublisher
from telephonyd.presence.state import AgentRetired, AgentsResynced, AgentStatus
from tests.fakes.mqtt_consumer import MQTTConsumer, retained
from tests.helpers import running, wait_until

pytestmark = pytest.mark.mosquitto

SINCE = "2026-11-21T04:54:15.000Z"


class StaticPresence:
    """What the publisher reads from presence: current agents and whether a resync completed."""

    def __init__(self, *agents: AgentStatus, seeded: bool = True) -> None:
        self.current = {a.endpoint: a for a in agents}
        self.seeded = seeded

    def agents(self) -> list[AgentStatus]:
        return [self.current[k] for k in sorted(self.current)]

    def change(self, publisher: MQTTPublisher, endpoint: str, state: str, online: bool = True) -> AgentStatus:
        previous = self.current.get(endpoint)
        status = AgentStatus(endpoint, state, online, SINCE, (previous.seq if previous else 0) + 1)
        self.current[endpoint] = status
        publisher.publish_event(status)
        return status


def agent(endpoint: str, state: str = "available", seq: int = 1, online: bool = True) -> AgentStatus:
    return AgentStatus(endpoint, state, online, SINCE, seq)


def make(host: str, port: int, prefix: str, presence: StaticPresence, **extra) -> MQTTPublisher:
    config = MQTTConfig(enabled=True, url=f"mqtt://{host}:{port}", base_topic=prefix, keepalive_s=5,
                        backoff_max_s=1.0, client_id=f"td-{prefix.rsplit('/', 1)[-1]}", **extra)
    return MQTTPublisher(config, node_id="ast1", presence=presence)


until = functools.partial(wait_until, timeout=10.0, interval=0.02)


def doc(payload: bytes) -> dict:
    return json.loads(payload)


async def test_retained_agents_deltas_and_clean_offline(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    presence = StaticPresence(agent("1010"), agent("1011", "offline", online=False))
    publisher = make(host, port, topic_prefix, presence)
    root = f"{topic_prefix}/ast1"
    async with MQTTConsumer(host, port, topic_prefix) as consumer:
        async with running(publisher, 5.0):
            await consumer.wait_for(lambda: consumer.on(f"{root}/agents/1011"))
            await until(lambda: publisher.health()["state"] == "connected")
            first = await retained(host, port, topic_prefix)
            assert first[f"{root}/status"] == b"online"
            assert doc(first[f"{root}/agents/1010"]) == agent("1010").as_dict()
            assert doc(first[f"{root}/agents/1011"])["online"] is False

            presence.change(publisher, "1010", "on_call")
            delta = await consumer.wait_for(lambda: consumer.on(f"{root}/events/agent_status"))
            assert doc(delta[0].payload) == {"endpoint": "1010", "state": "on_call", "online": True,
                                             "since": SINCE, "seq": 2}
            await consumer.wait_for(lambda: len(consumer.on(f"{root}/agents/1010")) >= 2)
            now = await retained(host, port, topic_prefix)
            assert doc(now[f"{root}/agents/1010"])["state"] == "on_call"
            assert f"{root}/events/agent_status" not in now  # deltas are not retained
        assert publisher.health()["state"] == "stopped"
        assert consumer.on(f"{root}/status")[-1].payload == b"offline"
    after = await retained(host, port, topic_prefix)
    assert after[f"{root}/status"] == b"offline"
    assert doc(after[f"{root}/agents/1010"])["state"] == "on_call"


async def test_last_will_on_an_unclean_disconnect_then_full_republish(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    presence = StaticPresence(agent("1010"), agent("1011"))
    publisher = make(host, port, topic_prefix, presence)
    root = f"{topic_prefix}/ast1"
    async with MQTTConsumer(host, port, topic_prefix) as consumer, running(publisher, 5.0):
        await until(lambda: publisher.health()["state"] == "connected")
        # Someone wipes 1011's retained state behind the publisher's back: only a full republish
        # after the reconnect can bring it back.
        async with MQTTConsumer(host, port, topic_prefix) as other:
            await other._client.publish(f"{root}/agents/1011", b"", qos=1, retain=True)
        await consumer.wait_for(lambda: any(m.payload == b"" for m in consumer.on(f"{root}/agents/1011")))
        connects = publisher.connects
        marker = len(consumer.messages)
        publisher._client._client.socket().shutdown(socket.SHUT_RDWR)  # the TCP link dies, no DISCONNECT
        presence.change(publisher, "1010", "ringing")  # a change while the broker is unreachable

        def will_then_online() -> bool:
            seen = [m.payload for m in consumer.messages[marker:] if m.topic == f"{root}/status"]
            return seen[:1] == [b"offline"] and b"online" in seen[1:]

        await consumer.wait_for(will_then_online)
        await until(lambda: publisher.connects == connects + 1 and publisher.health()["state"] == "connected")
        state = await retained(host, port, topic_prefix)
        assert state[f"{root}/status"] == b"online"
        assert doc(state[f"{root}/agents/1010"])["state"] == "ringing"
        assert doc(state[f"{root}/agents/1011"]) == agent("1011").as_dict()


async def test_retired_endpoints_are_cleared(mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    root = f"{topic_prefix}/ast1"
    # A previous run left 9999 retained; this run's presence (seeded) no longer knows it.
    async with MQTTConsumer(host, port, topic_prefix) as seeder:
        await seeder._client.publish(f"{root}/agents/9999", json.dumps(agent("9999").as_dict()), qos=1, retain=True)
    presence = StaticPresence(agent("1010"), agent("1011"), seeded=False)
    publisher = make(host, port, topic_prefix, presence)
    async with running(publisher, 5.0):
        await until(lambda: publisher.health()["state"] == "connected")
        state = await retained(host, port, topic_prefix)
        assert f"{root}/agents/9999" in state  # not seeded yet: nothing is judged gone

        publisher.publish_event(AgentRetired("1011", 2))
        del presence.current["1011"]
        async with asyncio.timeout(10):
            while f"{root}/agents/1011" in await retained(host, port, topic_prefix):
                pass

        presence.seeded = True
        publisher.publish_event(AgentsResynced(("1010",)))
        async with asyncio.timeout(10):
            while f"{root}/agents/9999" in (state := await retained(host, port, topic_prefix)):
                pass
        assert f"{root}/agents/1010" in state


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[str, int, Callable[[str], None]]]:
    """A Mosquitto of our own (no persistence) that the test can stop and start again."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto binary not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)

    def control(action: str) -> None:
        {"start": start, "stop": stop}[action]()

    yield "127.0.0.1", port, control
    stop()


async def wait_port(port: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)


async def test_broker_down_never_blocks_presence_and_latest_state_wins(private_broker, topic_prefix) -> None:
    host, port, broker = private_broker
    presence = StaticPresence()
    publisher = make(host, port, topic_prefix, presence, queue_size=10)
    root = f"{topic_prefix}/ast1"
    async with running(publisher, 5.0):
        await until(lambda: publisher.health()["state"] == "disconnected")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(2000):  # far past queue_size, with the broker down
            presence.change(publisher, f"{1000 + i % 50}", ("available", "on_call")[i % 2])
        assert loop.time() - started < 1.0
        health = publisher.health()
        assert health["ok"] is False and health["queued"] <= 10 and health["dropped"] > 0

        broker("start")
        await wait_port(port)
        await until(lambda: publisher.health()["state"] == "connected", timeout=15)
        state = await retained(host, port, topic_prefix)
        assert state[f"{root}/status"] == b"online"
        for endpoint, status in presence.current.items():
            assert doc(state[f"{root}/agents/{endpoint}"]) == status.as_dict()

        # the broker restarts empty (no persistence): everything is republished on reconnect
        broker("stop")
        await until(lambda: publisher.health()["state"] != "connected")
        presence.change(publisher, "1000", "ringing")
        broker("start")
        await wait_port(port)
        await until(lambda: publisher.health()["state"] == "connected", timeout=15)
        state = await retained(host, port, topic_prefix)
        assert len([t for t in state if "/agents/" in t]) == 50
        assert doc(state[f"{root}/agents/1000"])["state"] == "ringing"
