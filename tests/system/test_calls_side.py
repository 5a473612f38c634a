"""The daemon as a process with calls enabled: recorded AMI calls from a fake Asterisk become signed
webhooks, MQTT call events and call records (``GET /api/calls``)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from telephonyd.calls.webhooks import SIGNATURE_HEADER, verify_signature
from tests.fakes.ami_channels import RecordedChannelsAMI
from tests.fakes.mqtt_consumer import MQTTConsumer

pytestmark = pytest.mark.system

WEBHOOK_SECRET = "webhook-s3cret-value"


async def until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


async def test_recorded_calls_become_webhooks_mqtt_events_and_records(daemon_factory, mqtt_broker,
                                                                     topic_prefix) -> None:
    host, port = mqtt_broker
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with RecordedChannelsAMI(secret="ami-s3cret") as ami, MQTTConsumer(host, port, topic_prefix) as consumer:
            daemon = daemon_factory({
                "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5"},
                "mqtt": {"enabled": True, "url": f"mqtt://{host}:{port}", "base_topic": topic_prefix},
                "outbox": {"poll_interval_s": 0.1, "backoff_base_s": 0.1},
                "calls": {"enabled": True, "webhooks": [
                    {"name": "crm", "url": f"http://127.0.0.1:{hook_port}/hook", "secret": WEBHOOK_SECRET,
                     "events": ["call.answered", "call.ended"]}]},
            })
            daemon.start()

            async def resynced():
                code, data = await daemon.get("/status")
                return code == 200 and data["components"]["calls"]["resyncs"] >= 1

            await until(resynced, what="the calls resync after the AMI login")
            ami.replay("01_ANSWER_ami_events.txt")
            ami.replay("02_BUSY_ami_events.txt")

            async def delivered():
                return len(received) == 3

            await until(delivered, what="three webhooks")
            docs = [json.loads(body) for _, body in received]
            assert sorted(d["event_id"] for d in docs) == [
                "1795237838.1:call.answered:1", "1795237838.1:call.ended:1", "1795237857.3:call.ended:1"]
            for headers, body in received:
                assert verify_signature(WEBHOOK_SECRET, headers[SIGNATURE_HEADER], body)
            assert WEBHOOK_SECRET not in daemon.logs()

            root = f"{topic_prefix}/{daemon.config['node_id']}"
            await consumer.wait_for(lambda: len(consumer.on(f"{root}/events/call")) == 4)

            async def records():
                code, data = await daemon.get("/api/calls?since_s=3600")
                return code == 200 and len(data["calls"]) == 2 and data["calls"]

            found = await until(records, what="two call records")
            assert {c["linkedid"]: c["dial_status"] for c in found} == {"1795237838.1": "ANSWER",
                                                                        "1795237857.3": "BUSY"}
            code, one = await daemon.get("/api/calls/1795237857.4")  # the busy call's callee leg
            assert code == 200 and one["call"]["record"]["tech_cause"] == "486"
    finally:
        await runner.cleanup()

