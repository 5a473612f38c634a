"""Conformance with a real Asterisk 22.10.1: telephonyd's recorded AMI and FastAGI dialogues, replayed.

tests/fixtures/asterisk-22.10.1/conformance/ holds what a recording proxy saw between telephonyd and the
lab Asterisk during one live run (see the README there): the fakes play Asterisk's side byte for byte
(ActionIDs aside), and these tests check telephonyd's side (the actions and commands it sends, in the
recorded form) and what it makes of them (ps_contacts, presence, the outcomes it queues).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.calllog import CallLogHandler
from telephonyd.config import CallLogConfig, FastAGIConfig, PresenceConfig
from telephonyd.fastagi import FastAGIServer
from tests.component.presence_rig import presence_rig
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.agi_replay import replay
from tests.fakes.ami_replay import AMIReplay
from tests.fakes.recording_proxy import read_recording
from tests.helpers import wait_until

RUN = ASTERISK_FIXTURES / "conformance"
EXPECTED = json.loads((RUN / "expected.json").read_text())


async def test_ami_dialogue_of_the_contact_scenarios(sqlite_url: str) -> None:
    """Start, REGISTER, qualify failure, re-REGISTER, unREGISTER, res_pjsip reload, telephonyd refresh, an
    AMI cut with a REGISTER during it, an expiry, a daemon restart while contacts changed, an Asterisk
    restart, calls: every connection replayed in order; the end state must be Asterisk's."""
    refreshes: list[asyncio.Task[Any]] = []
    rig_box: list[Any] = []

    def prompt(fields: Any) -> None:
        """The recorded run's `telephonyd refresh` (POST /api/ami/refresh) made the second listing."""
        if dict(fields).get("Action") == "PJSIPShowContacts" and rig_box:
            refreshes.append(asyncio.ensure_future(rig_box[0].api("POST", "/api/ami/refresh")))

    # The recorded run predates the QueueStatus/PresenceStateList seed listings: leave them out here.
    async with AMIReplay(RUN / "ami_dialogue.jsonl", prompt=prompt) as server, presence_rig(
            sqlite_url, server=server, node_id=EXPECTED["node_id"],
            presence=PresenceConfig(availability_listings=False)) as rig:
        rig_box.append(rig)
        await wait_until(server.finished.is_set, timeout=120, what="the recorded dialogue played")
        assert server.unexpected == [], "telephonyd sent actions the real Asterisk was never asked"
        assert server.missing == [], "telephonyd did not send actions it sent to the real Asterisk"
        assert len(server.played) == len(server.recorded) == EXPECTED["ami_connections"]
        assert len(refreshes) == 1 and (await refreshes[0])[0] == 200
        for played in server.played:
            names = [dict(fields)["Action"] for fields in played.sent]
            assert names[:2] == ["Login", "CoreSettings"]
            assert dict(played.sent[0])["Events"] == "system,call,agent,security"
            assert {"PJSIPShowContacts", "SIPpeers", "IAXpeerlist", "DeviceStateList"} <= set(names)
        want = {cid: tuple(v) for cid, v in EXPECTED["final_contacts"].items()}

        async def rows() -> dict[str, tuple[Any, ...]]:
            async with rig.store.connect() as conn:
                got = (await conn.execute(sa.text("SELECT id, uri, status, expiration_time FROM ps_contacts"))).all()
            return {r[0]: (r[1], r[2], r[3]) for r in got}

        final: dict[str, tuple[Any, ...]] = {}

        async def converged() -> bool:
            final.update(await rows())
            return final == want

        await wait_until(converged, timeout=10, what=f"ps_contacts == Asterisk's final listing {want}")
        code, body = await rig.api("GET", "/api/ami/extensions")
        assert code == 200
        online = {e["endpoint"] for e in body["extensions"] if e["online"]}
        usable = {cid.split(";@")[0] for cid, v in want.items() if v[1] in ("Reachable", "NonQualified")}
        assert usable <= online, "every phone with a usable contact shows online"
        assert online <= {cid.split(";@")[0] for cid in want}


@pytest.mark.parametrize("conn", sorted(read_recording(RUN / "fastagi_dialogue.jsonl")))
async def test_fastagi_dialogue_of_the_recorded_calls(conn: int) -> None:
    """Each recorded FastAGI session (start stage, VICIdial's h,1 line, the argument-form h,2 line):
    telephonyd must send exactly the recorded commands and queue the recorded outcome once."""
    dialogue = read_recording(RUN / "fastagi_dialogue.jsonl")
    queued: dict[tuple[str, str], dict[str, Any]] = {}

    class Row:
        def __init__(self, created: bool) -> None:
            self.id, self.created = len(queued), created

    async def enqueue(target: str, key: str, payload: dict[str, Any]) -> Row:
        created = (target, key) not in queued
        queued.setdefault((target, key), payload)
        return Row(created)

    # Configured as the daemon that was recorded: its DID variables were OPTIMIZER_DID alone (the
    # seed's DID_NUMBER joined the default later), so it sent exactly the recorded GET FULL VARIABLE.
    handler = CallLogHandler(CallLogConfig.model_validate({"variables": {"did": ["OPTIMIZER_DID"]}}), enqueue,
                             target="did_optimizer")
    server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"]), {"call_log": handler})
    await server.start()
    task = asyncio.create_task(server.run())
    try:
        host, port = server.bound_addresses[0][:2]
        for number in sorted(dialogue):  # the sessions before this one first: the start stage is remembered
            if number > conn:
                break
            result = await replay(host, port, dialogue[number]["c2s"], dialogue[number]["s2c"])
            assert result.divergence is None, result.divergence
            assert result.closed_by_server
    finally:
        await server.stop(5.0)
        await asyncio.wait_for(task, 5.0)
    for (_, key), payload in queued.items():
        expected = EXPECTED["outcomes"][key]
        # fields added to the outcome after the run: the DID used, where it came from, the report kind
        expected = {**expected, "didUsed": expected["phoneNumber"], "didSource": "OPTIMIZER_DID", "report": "outcome"}
        assert {k: v for k, v in payload.items() if k != "timestamp"} == {
            k: v for k, v in expected.items() if k != "timestamp"}
