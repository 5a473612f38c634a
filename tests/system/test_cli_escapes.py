"""Escape sequences a peer sent (a uniqueid, a callback's customerId, a rejected unique_id) are shown
escaped by every CLI command that prints them, never written raw to the operator's terminal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.agi import FakeChannel, run_session

from .cli_run import telephonyd
from .daemon import Daemon

pytestmark = pytest.mark.system

ESC = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e"  # OSC title, clear screen, C1 CSI, right-to-left override


def assert_escaped(output: str) -> None:
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in output, repr(output)
    assert "\\x1b]0;owned\\x07" in output or "\\u001b]0;owned\\u0007" in output, output


async def feed(daemon: Daemon) -> None:
    chan = FakeChannel.synthetic(
        {"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "campaign_id": "ESC", "agent": "6001",
         "OPTIMIZER_DID": "15551230001"},
        args=["ANSWER", "16"], uniqueid="1795600000.1" + ESC, extension="h", priority="2",
    )
    transcript = await run_session("127.0.0.1", daemon.agi_port, chan, timeout=15)
    assert transcript.result == "QUEUED", transcript
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        call = {"unique_id": "20260601", "customerId": "100" + ESC, "userId": "agent7", "systemDisposition": "BUSY",
                "dialledPhone": "09011112222", "callTime": "2026-06-01 10:00:00"}
        async with http.get(daemon.base_url + "/index.php", params=call) as resp:
            assert resp.status == 200
        async with http.get(daemon.base_url + "/index.php", params={**call, "unique_id": "12" + ESC}) as resp:
            assert resp.status >= 400  # a unique_id that is not numeric is refused (and logged)


def test_every_cli_output_escapes_control_characters(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d", {"ameyo": {"enabled": True}})
    daemon.start()
    try:
        asyncio.run(feed(daemon))
        config = str(daemon.config_path)
        listed = telephonyd("outbox", "list", "-c", config)
        assert listed.returncode == 0, listed.stderr
        assert "1795600000.1" in listed.stdout
        assert_escaped(listed.stdout)
        as_json = telephonyd("outbox", "list", "--json", "-c", config)
        assert_escaped(as_json.stdout)
        assert any(ESC in row["key"] for row in json.loads(as_json.stdout))  # JSON keeps the value, escaped
        requests = telephonyd("requests", "-c", config)
        assert requests.returncode == 0, requests.stderr
        rows = json.loads(telephonyd("requests", "--json", "-c", config).stdout)
        assert len(rows) == 2
        for row in rows:
            detail = telephonyd("requests", "--request-id", row["request_id"], "-c", config)
            assert detail.returncode == 0, detail.stderr
            assert_escaped(detail.stdout)
        for row in telephonyd("requests", "-c", config).stdout.splitlines():
            assert "\x1b" not in row and "\x9b" not in row
        # An error message that quotes the peer's value is escaped too.
        missing = telephonyd("outbox", "list", "--state", "x" + ESC, "-c", config)
        assert missing.returncode == 2
        assert_escaped(missing.stderr)
    finally:
        daemon.stop()
        daemon.close()
