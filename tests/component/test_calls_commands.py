"""``telephonyd calls list|show`` and ``telephonyd webhooks list|deliveries|retry`` against a real
store file holding what the call sink wrote for recorded calls."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from telephonyd.cli.calls import parse_since, register
from telephonyd.calls.records import metadata as calls_metadata
from telephonyd.calls.sink import CallSink
from telephonyd.config import Config, load_config
from telephonyd.outbox import Outbox, metadata
from telephonyd.outbox.queries import OutboxQueries
from telephonyd.store import Store
from tests.fakes.ami_wire import recorded_events
from tests.helpers import running, wait_until
from tests.outbox_harness import fast_config


class ContractContext:
    def __init__(self, config: Config) -> None:
        self.config = config

    async def open_store(self) -> Store:
        store = Store(self.config.store.url.get_secret_value(), schemas=[metadata, calls_metadata])
        await store.start()
        return store


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "telephonyd.yml"
    path.write_text(f"""node_id: cli-test
store:
  url: sqlite+aiosqlite:///{tmp_path}/store.db
calls:
  enabled: true
  webhooks:
    - {{name: crm, url: "http://127.0.0.1:9/hook", secret: topsecret-value, events: [call.ended]}}
""")
    return load_config(str(path))


async def _seed(config: Config) -> None:
    store = await ContractContext(config).open_store()
    outbox = Outbox(store, node_id="cli-test", config=fast_config())
    sink = CallSink(config.calls, store=store, outbox=outbox, node_id="cli-test")
    tracker = CallTracker()
    try:
        async with running(sink):
            for name in ("01_ANSWER_ami_events.txt", "02_BUSY_ami_events.txt"):
                for message in recorded_events(name):
                    for event in tracker.feed(AMIMessage(message), time.time()):
                        sink.push(event)
            await wait_until(lambda: sink.health()["queued"] == 0 and sink.written == 4, what="stored")
        # The busy call's delivery died.
        queries = OutboxQueries(store, "cli-test")
        rows = await queries.claim("webhook:crm", 10, lease_s=60)
        dead = next(r for r in rows if r.key.startswith("1795237857.3:"))
        await queries.mark_dead(dead.id, "HTTP 410: gone", 410)
        await queries.release([r.id for r in rows if r.id != dead.id])
    finally:
        await store.close()


def invoke(config: Config, *args: str):
    group = click.Group()
    register(group)
    return CliRunner().invoke(group, list(args), obj=ContractContext(config), catch_exceptions=False)


def test_calls_and_webhooks_commands(config: Config) -> None:
    asyncio.run(_seed(config))
    listed = json.loads(invoke(config, "calls", "list", "--since", "1h", "--json").output)
    assert [c["linkedid"] for c in listed] == ["1795237857.3", "1795237838.1"]  # newest first
    assert listed[0]["dial_status"] == "BUSY" and listed[0]["hangup_cause"] == 17
    text = invoke(config, "calls", "list").output
    assert "1795237838.1" in text and "ANSWER" in text
    shown = json.loads(invoke(config, "calls", "show", "1795237839.2").output)  # a leg's uniqueid
    assert shown["linkedid"] == "1795237838.1" and shown["record"]["hung_up_by"] == "callee"
    assert invoke(config, "calls", "show", "nope").exit_code == 1

    hooks = json.loads(invoke(config, "webhooks", "list", "--json").output)
    assert hooks[0]["name"] == "crm" and hooks[0]["signed"] is True
    assert hooks[0]["deliveries"] == {"pending": 1, "dead": 1}
    assert "topsecret-value" not in invoke(config, "webhooks", "list").output
    deliveries = json.loads(invoke(config, "webhooks", "deliveries", "--state", "dead", "--json").output)
    assert [d["key"] for d in deliveries] == ["1795237857.3:call.ended:1"]
    assert deliveries[0]["last_status"] == 410
    assert json.loads(invoke(config, "webhooks", "retry", "--all-dead").output) == {"retried": 1}
    hooks = json.loads(invoke(config, "webhooks", "list", "--json").output)
    assert hooks[0]["deliveries"] == {"pending": 2}


def test_since_durations() -> None:
    assert parse_since("90") == 90 and parse_since("30m") == 1800 and parse_since("2d") == 172800
    with pytest.raises(click.BadParameter):
        parse_since("yesterday")
