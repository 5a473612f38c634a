"""``capture --agi``: a recording proxy in front of the daemon's FastAGI port passes a call_log call
through unchanged (the daemon answers as without it) and writes both directions, secrets masked."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from telephonyd.diagnostics.agicapture import capture_agi
from telephonyd.diagnostics.capture import MASK
from telephonyd.diagnostics.testoutcome import SyntheticChannel, synthetic_uniqueid

SECRET = "pw-in-a-url-9"


class LeakyChannel(SyntheticChannel):
    """A channel whose caller name carries a URL with a password (what masking must catch)."""

    def block(self, end: bool) -> bytes:
        return super().block(end).replace(b"agi_calleridname: telephonyd test-outcome",
                                          f"agi_calleridname: mysql://cron:{SECRET}@10.0.0.5/asterisk".encode())


async def test_capture_agi_records_both_directions_masked(daemon_factory, tmp_path: Path) -> None:
    daemon = daemon_factory({})
    daemon.start()
    path = tmp_path / "agi.jsonl"
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(capture_agi(("127.0.0.1", daemon.agi_port), ("127.0.0.1", 0), 3.0, path,
                                           lambda _s: None, bound.set_result))
    port = await asyncio.wait_for(bound, 5)
    channel = LeakyChannel(synthetic_uniqueid(time.time()), port=port)
    assert await channel.session(False) == "STARTED"
    assert await channel.session(True) == "QUEUED"
    sessions, lines = await task
    assert sessions == 2 and lines > 20
    text = path.read_text()
    assert SECRET not in text and f"mysql://cron:{MASK}@10.0.0.5" in text
    records = [json.loads(line) for line in text.splitlines()[1:]]
    assert {r["from"] for r in records} == {"asterisk", "daemon"}
    assert any(r["line"].startswith("GET FULL VARIABLE") for r in records)
    assert any(r["line"] == 'SET VARIABLE TELEPHONYD_RESULT "QUEUED"' for r in records if r["session"] == 2)
    assert json.loads(text.splitlines()[0])["capture"] == "agi"


async def test_capture_command_needs_a_kind_and_a_valid_listen(tmp_path: Path) -> None:
    from tests.system.cli_run import telephonyd

    config = tmp_path / "telephonyd.yml"
    config.write_text("node_id: cap\n")
    none = await asyncio.to_thread(telephonyd, "capture", "1", str(tmp_path / "x"), "-c", str(config))
    assert none.returncode == 2 and "give --ami or --agi" in none.stderr
    bad = await asyncio.to_thread(telephonyd, "capture", "--agi", "--listen", "nowhere", "1", str(tmp_path / "x"),
                                  "-c", str(config))
    assert bad.returncode == 2 and "--listen must be HOST:PORT" in bad.stderr
    no_secret = await asyncio.to_thread(telephonyd, "capture", "--ami", "1", str(tmp_path / "x"), "-c", str(config))
    assert no_secret.returncode == 1 and "needs ami.secret" in no_secret.stderr
