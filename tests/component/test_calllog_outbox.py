"""The ``call_log`` path end to end inside the process: fake Asterisk -> FastAGI server ->
CallLogHandler -> the real Outbox (group commit) -> Store on SQLite.

What a user notices: one committed outbox row per call leg, keyed by uniqueid, holding exactly the
DID Optimizer payload, even though VICIdial's ``h,1`` line and the ``h,2`` line both report it;
``TELEPHONYD_RESULT`` tells the dialplan QUEUED / DUPLICATE / SKIPPED.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from telephonyd.calllog import CallLogHandler
from telephonyd.config import CallLogConfig, FastAGIConfig, OutboxConfig
from telephonyd.fastagi import FastAGIServer
from telephonyd.outbox import Outbox
from telephonyd.store import Store
from tests.fakes.agi import VICIDIAL_DIR, FakeChannel, run_session

NOW = 1795300000.0
SCENARIOS = ("01_ANSWER", "02_BUSY", "04_CHANUNAVAIL", "07_AMD_SILENCE", "08_CALLER_HANGUP_DURING_START")


def call_log_sessions(scenario: str) -> list[FakeChannel]:
    channels = [FakeChannel.from_recording(p) for p in sorted(VICIDIAL_DIR.glob(f"{scenario}_agi*.txt"))]
    return [ch for ch in channels if ch.env["network_script"].startswith("call_log")]


async def test_one_committed_row_per_call_leg(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/telephonyd.db"
    store = Store(url, schemas=[Outbox.metadata])
    await store.start()
    outbox = Outbox(store, node_id="test", config=OutboxConfig())
    await outbox.start()
    handler = CallLogHandler(CallLogConfig(), outbox.enqueue, target="did_optimizer", clock=lambda: NOW)
    server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"]), {"call_log": handler})
    await server.start()
    task = asyncio.create_task(server.run())
    try:
        host, port = server.bound_addresses[0][:2]
        results = {}
        for scenario in SCENARIOS:
            results[scenario] = [(await run_session(host, port, ch)).result for ch in call_log_sessions(scenario)]
    finally:
        await server.stop(5.0)
        await asyncio.wait_for(task, 5.0)
        await outbox.stop(5.0)

    try:
        assert results == {
            "01_ANSWER": ["STARTED", "QUEUED", "DUPLICATE"],
            "02_BUSY": ["STARTED", "QUEUED", "DUPLICATE"],
            "04_CHANUNAVAIL": ["STARTED", "QUEUED", "DUPLICATE"],
            "07_AMD_SILENCE": ["STARTED", "QUEUED", "DUPLICATE"],
            "08_CALLER_HANGUP_DURING_START": ["STARTED", "SKIPPED", "SKIPPED"],
        }
        # Read back through a second Store on the same file: the rows are committed on disk.
        reader = Store(url, schemas=[Outbox.metadata])
        await reader.start()
        try:
            rows = await Outbox(reader, node_id="reader", config=OutboxConfig()).list_rows()
        finally:
            await reader.close()
        assert [(r["target"], r["key"], r["state"]) for r in rows] == [
            ("did_optimizer", "1795237838.1", "pending"),
            ("did_optimizer", "1795237857.3", "pending"),
            ("did_optimizer", "1795238008.24", "pending"),
            ("did_optimizer", "1795237912.13", "pending"),
        ]
        busy = rows[1]["payload"]
        assert busy == {
            "uniqueid": "1795237857.3", "linkedid": "1795237857.3", "phoneNumber": "15551230001",
            "customerPhone": "915555550001", "campaignId": "TESTCAMP", "dialStatus": "BUSY",
            "disposition": "BUSY", "duration": 0, "dialedTime": 0, "ringTime": 0, "hangupCause": 17,
            "hangupSource": "", "agentId": "6001", "leadId": "12345", "listId": "", "amdStatus": "",
            "amdCause": "", "sipHangupCause": 486, "sipHangupReason": "Busy Here",
            "timestamp": int(NOW), "source": "telephonyd",
            "didUsed": "15551230001", "didSource": "OPTIMIZER_DID", "report": "outcome",
        }  # fmt: skip
        answered = rows[0]["payload"]
        assert (answered["dialStatus"], answered["duration"], answered["dialedTime"], answered["ringTime"]) == (
            "ANSWER", 2, 3, 1,
        )  # fmt: skip
        amd = rows[3]["payload"]
        assert (amd["amdStatus"], amd["amdCause"], amd["customerPhone"]) == (
            "MACHINE", "INITIALSILENCE-2500-2500", "915555550007",
        )  # fmt: skip
    finally:
        await store.close()
