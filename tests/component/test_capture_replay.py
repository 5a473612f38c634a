"""``telephonyd capture --ami`` against the fake AMI (Asterisk 22.10.1's events), secrets masked;
``telephonyd replay`` of that file offline: the agent messages and the final states."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from telephonyd.config import Config
from telephonyd.diagnostics.capture import MASK, capture_ami, mask_pairs, read_capture
from telephonyd.diagnostics.replay import replay
from tests.fakes.ami import FakeAMIServer

SECRET = "ami-capture-s3cret"


def test_mask_pairs_hides_secrets_keys_and_url_passwords() -> None:
    pairs = [("Secret", "x1"), ("Key", "abc"), ("Event", "VarSet"), ("Value", "mysql://u:pw9@db/x"),
             ("AuthToken", "t"), ("Exten", "1010")]
    masked = dict(map(tuple, mask_pairs(pairs)))
    assert masked["Secret"] == masked["Key"] == masked["AuthToken"] == MASK
    assert masked["Value"] == f"mysql://u:{MASK}@db/x" and masked["Exten"] == "1010"


async def test_capture_then_replay_offline(tmp_path: Path) -> None:
    path = tmp_path / "ami.jsonl"
    said: list[str] = []
    async with FakeAMIServer(secret=SECRET) as ami:
        ami.add_endpoint("1010")
        ami.add_endpoint("1011")
        config = Config.model_validate({"ami": {"enabled": True, "port": ami.port, "secret": SECRET, "auth": "md5"},
                                        "node_id": "cap1"})
        task = asyncio.create_task(capture_ami(config.ami, 1.5, path, said.append))
        while not any("recording" in s for s in said):
            assert not task.done(), task
            await asyncio.sleep(0.02)
        ami.register("1010")
        ami.register("1011")
        ami.set_device_state("1011", "INUSE")
        count = await task
    text = path.read_text()
    assert SECRET not in text
    header, events = read_capture(path)
    assert header["capture"] == "ami" and count == len(events) >= 5
    assert any(dict(p).get("Event") == "DeviceStateChange" for _, p in events)

    lines: list[str] = []
    result = await replay(config, events, lines.append, header["started_at"])
    assert result["agents"]["1011"]["state"] == "on_call"
    assert result["agents"]["1010"]["state"] == "available"
    published = [line for line in lines if "mqtt telephonyd/cap1/agents/1011" in line]
    assert published and json.loads(published[-1][published[-1].index("{"):])["state"] == "on_call"


def test_replay_command_prints_the_calls_of_a_recorded_call(tmp_path: Path) -> None:
    """01_ANSWER's AMI events (Asterisk 22.10.1, vicidial/) as a capture, replayed by the CLI."""
    from tests.conftest import ASTERISK_FIXTURES
    from tests.system.cli_run import telephonyd

    text = (ASTERISK_FIXTURES / "vicidial" / "01_ANSWER_ami_events.txt").read_text()
    blocks = [[line.partition(": ")[::2] for line in block.splitlines() if ": " in line]
              for block in text.split("\n\n") if block.strip()]
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join([json.dumps({"capture": "ami", "format": 1, "started_at": 1795237838.0, "host": "lab"}),
                               *(json.dumps({"t": i * 0.01, "fields": b}) for i, b in enumerate(blocks))]) + "\n")
    config = tmp_path / "telephonyd.yml"
    config.write_text("calls:\n  enabled: true\n")
    done = telephonyd("replay", str(path), "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "call  call.ringing  linkedid 1795237838.1" in done.stdout
    assert "call  call.ended  linkedid 1795237838.1" in done.stdout and "dial_status ANSWER" in done.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a capture"}\n')
    refused = telephonyd("replay", str(bad), "-c", str(config))
    assert refused.returncode == 1 and "not an AMI capture" in refused.stderr
