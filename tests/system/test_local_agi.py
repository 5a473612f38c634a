"""``agi/telephonyd-call-log`` as Asterisk runs a local AGI script: a process speaking AGI over its
stdin and stdout, driven here by the fake Asterisk's rules, recording into the daemon's store."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from telephonyd.localagi import without_config_args
from tests.fakes.agi import VICIDIAL_DIR, FakeChannel, parse_agi_args

pytestmark = pytest.mark.system

SCRIPT = Path(__file__).resolve().parents[2] / "agi" / "telephonyd-call-log"
RECORDING = VICIDIAL_DIR / "02_BUSY_agi3_h-modern_4573.txt"


class Transcript:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.variables_set: dict[str, str] = {}
        self.stderr = ""
        self.code: int | None = None


async def play(channel: FakeChannel, *argv: str, env: dict[str, str], timeout: float = 20.0) -> Transcript:
    """Start the script like res_agi does and answer its commands as Asterisk 22 would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *argv,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    transcript = Transcript()
    chan = channel.copy()
    async with asyncio.timeout(timeout):
        proc.stdin.write(chan.env_block)
        while line := await proc.stdout.readline():
            command = line.decode().rstrip("\n")
            transcript.commands.append(command)
            proc.stdin.write(("\n".join(chan.answer(command)) + "\n").encode())
            argv_ = parse_agi_args(command)
            if [a.upper() for a in argv_[:2]] == ["SET", "VARIABLE"] and len(argv_) == 4:
                transcript.variables_set[argv_[2]] = argv_[3]
        transcript.stderr = (await proc.stderr.read()).decode(errors="replace")
        transcript.code = await proc.wait()
    return transcript


def outbox_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM outbox ORDER BY id")]


@pytest.fixture
def install(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    db = tmp_path / "state" / "telephonyd.db"
    config = tmp_path / "telephonyd.yml"
    config.write_text(yaml.safe_dump({
        "node_id": "agi-host",
        "store": {"url": f"sqlite+aiosqlite:///{db}"},
        "did_optimizer": {"api_key": "did_" + "7" * 40},
        "logging": {"format": "json"},
    }))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPHONYD")}
    return config, db, env


async def test_recorded_hangup_session_is_queued_in_the_store(install: tuple[Path, Path, dict[str, str]]) -> None:
    config, db, env = install
    channel = FakeChannel.from_recording(RECORDING)
    uniqueid = channel.env["uniqueid"]

    first = await play(channel, "-c", str(config), env=env)
    assert first.code == 0, first.stderr
    assert first.variables_set.get("TELEPHONYD_RESULT") == "QUEUED", first.stderr
    assert all(c.split(" ")[0] in ("GET", "SET") for c in first.commands)  # nothing but AGI on stdout

    rows = outbox_rows(db)
    assert len(rows) == 1
    row = rows[0]
    assert (row["target"], row["key"], row["state"], row["node_id"]) == ("did_optimizer", uniqueid, "pending", "agi-host")
    payload = json.loads(row["payload"])
    assert payload["uniqueid"] == uniqueid
    assert payload["dialStatus"] == "BUSY" and payload["hangupCause"] == 17

    logs = [json.loads(line) for line in first.stderr.splitlines() if line.startswith("{")]
    about_call = [r for r in logs if r["logger"].startswith(("telephonyd.calllog", "telephonyd.localagi"))]
    assert about_call and all(r.get("uniqueid") == uniqueid for r in about_call)
    assert "7" * 40 not in first.stderr

    # Asterisk runs the h extension line again (or VICIdial's own line also reports): nothing new.
    again = await play(channel, env={**env, "TELEPHONYD_CONFIG": str(config)})
    assert again.variables_set.get("TELEPHONYD_RESULT") == "DUPLICATE", again.stderr
    assert len(outbox_rows(db)) == 1


async def test_config_error_still_answers_the_dialplan(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("no_such_section: {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPHONYD")}
    result = await play(FakeChannel.from_recording(RECORDING), "-c", str(bad), env=env)
    assert result.code == 78
    assert result.variables_set.get("TELEPHONYD_RESULT") == "ERROR"
    assert "no_such_section" in result.stderr


def test_config_arguments_are_not_agi_arguments() -> None:
    env = {"uniqueid": "1.1", "arg_1": "-c", "arg_2": "/etc/x.yml", "arg_3": "BUSY", "arg_4": "17"}
    assert without_config_args(env) == {"uniqueid": "1.1", "arg_1": "BUSY", "arg_2": "17"}
    plain = {"uniqueid": "1.1", "arg_1": "BUSY", "arg_2": "17"}
    assert without_config_args(plain) == plain
