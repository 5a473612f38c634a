"""dialplan/vicidial.conf beside VICIdial's FastAGI_log.pl on a real Asterisk 22.10.1, replayed.

tests/fixtures/asterisk-22.10.1/vicidial-beside/ holds one live run (see its README): VICIdial's carrier
entry (start line and h,1 HVcauses line on 4577, answered by FastAGI_log.pl) plus telephonyd's added h
priorities, for an answered call, busy, no answer, a caller cancel and an unregistered callee.
telephonyd's five sessions (as Asterisk sent them through a recording proxy) are played here against the
daemon's FastAGI listener with a real outbox on SQLite: telephonyd must send exactly the recorded commands
(the recorded `SET VARIABLE TELEPHONYD_RESULT "QUEUED"` included, so h,4 skips the local fallback) and
store the outcome the live daemon stored, once (plus the customer's number, which that daemon could not
find: see the README there).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.app import build_store
from telephonyd.calllog import CallLogHandler
from telephonyd.config import Config
from telephonyd.fastagi import FastAGIServer
from telephonyd.outbox import Outbox
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.agi_replay import replay
from tests.fakes.recording_proxy import read_recording

RUN = ASTERISK_FIXTURES / "vicidial-beside"
SESSIONS = read_recording(RUN / "telephonyd_4573_beside.jsonl")
LIVE_OUTBOX = {row["key"]: row for row in json.loads((RUN / "telephonyd_outbox.json").read_text())}
FALLBACK_KEYS = {row["uniqueid"]
                 for call in json.loads((RUN / "fastagi_log_pl_rows_fallback.json").read_text())["calls"]
                 for row in call["rows"]["vicidial_carrier_log"]}


class Daemon:
    def __init__(self, config: Config) -> None:
        self.store = build_store(config)
        self.outbox = Outbox(self.store, node_id=config.node_id, config=config.outbox)
        self.server = FastAGIServer(config.fastagi, {
            "call_log": CallLogHandler(config.call_log, self.outbox.enqueue, target="did_optimizer")})
        self.address: tuple[str, int] = ("", 0)

    async def rows(self) -> dict[str, dict[str, Any]]:
        async with self.store.connect() as conn:
            got = (await conn.execute(sa.text("SELECT key, target, payload, state FROM outbox"))).all()
        return {r[0]: {"target": r[1], "payload": json.loads(r[2]), "state": r[3]} for r in got}


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    config = Config.model_validate({
        "node_id": "i14b-lab", "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/telephonyd.db"},
        "fastagi": {"listen": "127.0.0.1:0"}, "vicidial": {"fastagi_log_present": True}})
    d = Daemon(config)
    await d.store.start()
    await d.outbox.start()
    await d.server.start()
    task = asyncio.create_task(d.server.run())
    d.address = tuple(d.server.bound_addresses[0][:2])  # type: ignore[assignment]
    try:
        yield d
    finally:
        await d.server.stop(5.0)
        await asyncio.wait_for(task, 5.0)
        await d.outbox.stop(5.0)
        await d.store.close()


def _without_time(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "timestamp"}


def test_the_recorded_dialplan_is_the_snippet() -> None:
    """The run's h,2..h,8 are dialplan/vicidial.conf's lines (the port of telephonyd's line aside), after
    VICIdial's h,1 line as shipped; a change to the snippet needs a new recording."""
    snippet = (Path(__file__).parents[2] / "dialplan" / "vicidial.conf").read_text().splitlines()
    used = (RUN / "dialplan_used.conf").read_text().split("[i14b-vici-control]")[0].splitlines()
    ours = [line for line in snippet if line.startswith("exten => h,")]
    assert [int(line.split(",")[1]) for line in ours] == list(range(2, 9))
    assert [line for line in used if line.startswith("exten => h,")] == [
        "exten => h,1,AGI(agi://127.0.0.1:4577/call_log--HVcauses--PRI-----NODEBUG-----${HANGUPCAUSE}-----"
        "${DIALSTATUS}-----${DIALEDTIME}-----${ANSWEREDTIME}-----${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}))",
        *(line.replace("127.0.0.1:4573", "127.0.0.1:${I14B_TDPORT}") for line in ours)]


def test_the_recording_holds_one_session_per_scenario() -> None:
    """Five calls, each reaching telephonyd once on its own h,3 line after VICIdial's h,1."""
    statuses = []
    for session in SESSIONS.values():
        block = session["c2s"].decode("latin-1")
        assert "agi_extension: h\n" in block and "agi_priority: 3\n" in block
        assert "agi_network_script: call_log\n" in block and "HVcauses" not in block
        statuses.append(block.split("agi_arg_1: ")[1].split("\n")[0])
    assert statuses == ["ANSWER", "BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL"]


@pytest.mark.parametrize("conn", sorted(SESSIONS))
async def test_recorded_session_is_answered_queued_and_stored_once(daemon: Daemon, conn: int) -> None:
    session = SESSIONS[conn]
    result = await replay(*daemon.address, session["c2s"], session["s2c"])
    assert result.divergence is None, result.divergence
    assert result.closed_by_server
    assert result.commands[-1] == 'SET VARIABLE TELEPHONYD_RESULT "QUEUED"'
    uniqueid = session["c2s"].decode("latin-1").split("agi_uniqueid: ")[1].split("\n")[0]
    rows = await daemon.rows()
    assert list(rows) == [uniqueid]
    live = json.loads(LIVE_OUTBOX[uniqueid]["payload"])
    assert rows[uniqueid]["target"] == "did_optimizer" and rows[uniqueid]["state"] == "pending"
    # the run's daemon had no customer number (agi_dnid "unknown"); it now comes from the Local channel
    assert live["customerPhone"] == ""
    assert _without_time(rows[uniqueid]["payload"]) == _without_time(live) | {"customerPhone": "915552345678"}

    again = await replay(*daemon.address, session["c2s"], session["s2c"])
    assert again.divergence is not None and 'TELEPHONYD_RESULT "DUPLICATE"' in again.divergence, (
        "a repeated hangup line must be answered DUPLICATE (h,4 accepts it), not queued twice")
    assert list(await daemon.rows()) == [uniqueid]


def test_live_run_fallback_outcomes_match_the_fastagi_ones() -> None:
    """With the daemon stopped, the local AGI script recorded the same outcome for each scenario as the
    FastAGI path did (ids and time aside): the live run's outbox, as stored."""
    fastagi = [json.loads(LIVE_OUTBOX[k]["payload"]) for k in LIVE_OUTBOX if k not in FALLBACK_KEYS]
    local = [json.loads(LIVE_OUTBOX[k]["payload"]) for k in LIVE_OUTBOX if k in FALLBACK_KEYS]
    assert len(fastagi) == len(local) == 5

    def comparable(p: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in ("timestamp", "uniqueid", "linkedid")}

    assert [comparable(p) for p in local] == [comparable(p) for p in fastagi]
    assert [p["dialStatus"] for p in local] == ["ANSWER", "BUSY", "NOANSWER", "CANCEL", "CHANUNAVAIL"]
