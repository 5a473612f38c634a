"""``telephonyd requests`` reads the request log that real callbacks left in the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from click.testing import CliRunner

from telephonyd.cli import ameyo as commands
from telephonyd.ameyo.schema import metadata
from telephonyd.config import Config
from telephonyd.outbox import Outbox
from telephonyd.store import Store
from tests.component.ameyo_harness import settled, start_node, stop_node, tops_config
from tests.fakes.tops import FakeTops

CALL = {"unique_id": "4242", "customerId": "1", "crtObjectId": "c", "userId": "u", "dialledPhone": "0901"}


class Obj:
    """The two things the command uses from the CLI context."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = Config()

    async def open_store(self) -> Store:
        store = Store(self.url, schemas=[Outbox.metadata, metadata])
        await store.start()
        return store


async def fill(url: str) -> list[str]:
    fake = FakeTops()
    await fake.start()
    node = await start_node(url, fake, tops=tops_config(fake, real_send=False))
    try:
        ids = []
        for params in ({**CALL, "systemDisposition": "NO_ANSWER"}, {**CALL, "unique_id": "x"},
                       {**CALL, "unique_id": "4243", "systemDisposition": "BUSY"}):
            ids.append((await node.get("/index.php", params))[1]["request_id"])
        await settled(node)
        return ids
    finally:
        await stop_node(node)
        await fake.close()


def invoke(url: str, *args: str):
    group = click.Group()
    commands.register(group)
    return CliRunner().invoke(group, ["requests", *args], obj=Obj(url), catch_exceptions=False)


def test_requests_command(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    ok, rejected, other = asyncio.run(fill(url))

    table = invoke(url)
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["time", "request_id", "channel"]
    assert [line.split()[2] for line in lines[1:]] == [other, rejected, ok]  # newest first
    assert "unique_id must be numeric" in table.output and "dry_run" in table.output

    as_json = json.loads(invoke(url, "--call-id", "4242", "--json").output)
    assert [r["request_id"] for r in as_json] == [ok]
    assert as_json[0]["payload"] == {"predictiveCallCreateNotAnswer": {
        "callId": 4242, "callTime": as_json[0]["payload"]["predictiveCallCreateNotAnswer"]["callTime"],
        "errorInfo1": "NO_ANSWER"}}

    detail = invoke(url, "--request-id", rejected).output
    assert f"request {rejected}" in detail and "error: unique_id must be numeric" in detail
    assert '"unique_id": "x"' in detail

    assert len(json.loads(invoke(url, "--since", "1h", "--json").output)) == 3
    assert invoke(url, "--request-id", "nope").output.strip() == "no requests"
    assert invoke(url, "--since", "soon").exit_code == 2


def test_parse_since():
    assert [commands.parse_since(t) for t in ("90", "90s", "15m", "1h", "2d")] == [90, 90, 900, 3600, 172800]
