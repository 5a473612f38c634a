"""``telephonyd outbox stats|list|retry|drop`` against a real store file.

The commands are registered on a bare click group and given a context with the CLI contract's
shape (``.config``, ``async open_store()``), so they are tested as the ``telephonyd`` CLI runs them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from telephonyd.config import Config, load_config
from telephonyd.outbox import metadata
from telephonyd.cli.outbox import register
from telephonyd.outbox.queries import OutboxQueries
from telephonyd.store import Store
from tests.outbox_harness import outbox_node


class ContractContext:
    """``ctx.obj`` as the CLI contract defines it."""

    def __init__(self, config: Config) -> None:
        self.config = config

    async def open_store(self) -> Store:
        store = Store(self.config.store.url.get_secret_value(), schemas=[metadata],
                      connect_timeout_s=self.config.store.connect_timeout_s)
        await store.start()
        return store


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "telephonyd.yml"
    path.write_text(f"node_id: cli-test\nstore:\n  url: sqlite+aiosqlite:///{tmp_path}/store.db\n")
    return path


def store_url(config_file: Path) -> str:
    return f"sqlite+aiosqlite:///{config_file.parent}/store.db"


def seed(config_file: Path) -> dict[str, int]:
    """Two dead letters (k0, k1), one pending row (k2), one delivered row (k3); returns their ids."""

    async def go() -> dict[str, int]:
        async with outbox_node(store_url(config_file), node_id="ast1", run=False) as node:
            ids = {f"k{n}": (await node.outbox.enqueue("did_optimizer", f"k{n}", {"uniqueid": f"k{n}"})).id for n in range(4)}
            queries = OutboxQueries(node.store, "ast1")
            rows = await queries.claim("did_optimizer", 4, lease_s=60.0)
            by_key = {r.key: r for r in rows}
            await queries.mark_dead(by_key["k0"].id, "HTTP 200: Campaign not found", 200)
            await queries.mark_dead(by_key["k1"].id, "HTTP 401: Invalid API key", 401)
            await queries.release([by_key["k2"].id])
            await queries.mark_delivered(by_key["k3"].id, 200)
            return ids

    return asyncio.run(go())


def states(config_file: Path) -> dict[str, str]:
    async def go() -> dict[str, str]:
        async with outbox_node(store_url(config_file), run=False) as node:
            return await node.states()

    return asyncio.run(go())


def invoke(config_file: Path, *args: str) -> Result:
    group = click.Group("telephonyd")
    register(group)
    obj = ContractContext(load_config(config_file, environ={}))
    return CliRunner().invoke(group, list(args), obj=obj)


def test_stats(config_file: Path) -> None:
    seed(config_file)
    result = invoke(config_file, "outbox", "stats", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["by_state"] == {"pending": 1, "in_flight": 0, "delivered": 1, "dead": 2}
    assert data["dead"] == 2 and data["claims"] == []
    text = invoke(config_file, "outbox", "stats")
    assert text.exit_code == 0
    assert "dead               2" in text.output and "target did_optimizer: pending 1" in text.output


def test_list_dead_letters(config_file: Path) -> None:
    ids = seed(config_file)
    result = invoke(config_file, "outbox", "list", "--state", "dead", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["id"], r["key"], r["claimed_by"], r["last_status"], r["last_error"]) for r in rows] == [
        (ids["k0"], "k0", "ast1", 200, "HTTP 200: Campaign not found"),
        (ids["k1"], "k1", "ast1", 401, "HTTP 401: Invalid API key"),
    ]
    assert rows[0]["payload"] == {"uniqueid": "k0"}
    table = invoke(config_file, "outbox", "list")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert len(lines) == 5 and "claimed_by" in lines[0]
    assert "HTTP 401: Invalid API key" in lines[2] and "ast1" in lines[2]
    bad = invoke(config_file, "outbox", "list", "--state", "lost")
    assert bad.exit_code == 2


def test_retry_one_and_all_dead(config_file: Path) -> None:
    ids = seed(config_file)
    result = invoke(config_file, "outbox", "retry", str(ids["k0"]))
    assert result.exit_code == 0 and f"row {ids['k0']} is due again" in result.output
    assert states(config_file) == {"k0": "pending", "k1": "dead", "k2": "pending", "k3": "delivered"}
    delivered = invoke(config_file, "outbox", "retry", str(ids["k3"]), "--json")
    assert delivered.exit_code == 1
    assert json.loads(delivered.output) == {"success": False, "error": f"no dead or pending row {ids['k3']}"}
    everything = invoke(config_file, "outbox", "retry", "--all-dead", "--json")
    assert everything.exit_code == 0 and json.loads(everything.output) == {"success": True, "retried": 1}
    assert states(config_file)["k1"] == "pending"


def test_retry_needs_exactly_one_of_id_and_all_dead(config_file: Path) -> None:
    seed(config_file)
    assert invoke(config_file, "outbox", "retry").exit_code == 2
    assert invoke(config_file, "outbox", "retry", "1", "--all-dead").exit_code == 2


def test_drop(config_file: Path) -> None:
    ids = seed(config_file)
    result = invoke(config_file, "outbox", "drop", str(ids["k1"]))
    assert result.exit_code == 0 and f"row {ids['k1']} dropped" in result.output
    assert "k1" not in states(config_file)
    again = invoke(config_file, "outbox", "drop", str(ids["k1"]))
    assert again.exit_code == 1 and f"no row {ids['k1']}" in again.output


def test_unreachable_store_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "telephonyd.yml"
    path.write_text("store:\n  url: mysql+aiomysql://nobody@127.0.0.1:1/none\n  connect_timeout_s: 0.5\n")
    result = invoke(path, "outbox", "stats")
    assert result.exit_code == 1
    assert "unavailable" in result.output and "Traceback" not in result.output

