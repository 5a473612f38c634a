"""SIGHUP on the daemon as a process: live changes apply, a broken file is refused while the daemon
keeps serving, a change that needs a restart is named; systemd hears RELOADING=1 then READY=1."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import aiohttp
import pytest
import yaml

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer

from .daemon import Daemon, free_port

pytestmark = pytest.mark.system

OLD_TOKEN, NEW_TOKEN = "reload-admin-old-0001", "reload-admin-new-0002"
API_KEY = "did_" + "9" * 40


def channel(i: int) -> FakeChannel:
    return FakeChannel.synthetic({"DIALSTATUS": "NOANSWER", "HANGUPCAUSE": "16", "campaign_id": "RL"},
                                 args=["NOANSWER", "16"], uniqueid=f"1795500000.{i}", extension="h")


async def status_code(daemon: Daemon, token: str) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        async with client.get(daemon.base_url + "/status", headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status


def rewrite(daemon: Daemon, **sections: dict) -> None:
    """Change sections of the daemon's config file in place (the file keeps mode 0600)."""
    for name, values in sections.items():
        daemon.config[name] = {**daemon.config.get(name, {}), **values}
    daemon.config_path.write_text(yaml.safe_dump(daemon.config))


def hup(daemon: Daemon) -> list[str]:
    """SIGHUP, then wait for RELOADING=1 followed by READY=1; returns the notifications it sent."""
    since = len(daemon.drain_notifications())
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_notification("RELOADING=1", 10, since=since)
    daemon.wait_for_notification("READY=1", 10, since=since)
    sent = daemon.drain_notifications()[since:]
    flags = [line for note in sent for line in note.split("\n") if line in ("RELOADING=1", "READY=1")]
    assert flags[:2] == ["RELOADING=1", "READY=1"], sent
    return sent


async def wait_log(daemon: Daemon, msg: str, since: int, timeout: float = 10) -> dict:
    """Poll the daemon's log (records after index ``since``) for a line ``msg``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in daemon.log_records()[since:] if r.get("msg") == msg]
        if found:
            return found[-1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no log line {msg!r}:\n{daemon.logs()[-3000:]}")


async def test_sighup_applies_live_changes_and_keeps_serving_through_a_broken_file(daemon_factory: Callable[..., Daemon]) -> None:
    async with FakeDIDOptimizer(api_key=API_KEY) as first, FakeDIDOptimizer(api_key=API_KEY) as second:
        daemon = daemon_factory({
            "http": {"admin_token": OLD_TOKEN},
            "did_optimizer": {"enabled": True, "base_url": first.base_url, "api_key": API_KEY},
            "outbox": {"poll_interval_s": 0.1},
        })
        daemon.start()
        assert (await run_session("127.0.0.1", daemon.agi_port, channel(1))).result == "QUEUED"
        await daemon.wait_status(lambda s: s["outbox"]["by_state"].get("delivered") == 1)
        assert set(first.deliveries) == {"1795500000.1"}

        # 1. Live changes: the admin token and the DID Optimizer's URL.
        lines = len(daemon.log_records())
        rewrite(daemon, http={"admin_token": NEW_TOKEN}, did_optimizer={"base_url": second.base_url})
        hup(daemon)
        reloaded = await wait_log(daemon, "configuration reloaded", lines)
        assert {"http.admin_token", "did_optimizer.base_url"} <= set(reloaded["changed"])
        assert reloaded["needs_restart"] == []
        assert await status_code(daemon, NEW_TOKEN) == 200
        assert await status_code(daemon, OLD_TOKEN) == 401
        assert (await run_session("127.0.0.1", daemon.agi_port, channel(2))).result == "QUEUED"
        await daemon.wait_status(lambda s: s["outbox"]["by_state"].get("delivered") == 2)
        assert set(second.deliveries) == {"1795500000.2"} and set(first.deliveries) == {"1795500000.1"}

        # 2. A broken file: logged, the running configuration stays, the daemon keeps serving.
        lines = len(daemon.log_records())
        daemon.config_path.write_text("http: [this is not: valid yaml\n")
        hup(daemon)
        rejected = await wait_log(daemon, "reload rejected, keeping the running configuration", lines)
        assert "not valid YAML" in rejected["error"] and rejected["level"] == "error"
        assert await status_code(daemon, NEW_TOKEN) == 200
        assert (await run_session("127.0.0.1", daemon.agi_port, channel(3))).result == "QUEUED"
        await daemon.wait_status(lambda s: s["outbox"]["by_state"].get("delivered") == 3)
        assert "1795500000.3" in second.deliveries

        # 3. A change that needs a restart: named in the log, the old listener keeps working.
        lines = len(daemon.log_records())
        rewrite(daemon, fastagi={"listen": f"127.0.0.1:{free_port()}"})
        hup(daemon)
        restart = await wait_log(daemon, "some changes need a restart", lines)
        assert restart["needs_restart"] == ["fastagi.listen"] and restart["level"] == "warning"
        assert (await run_session("127.0.0.1", daemon.agi_port, channel(4))).result == "QUEUED"

        assert daemon.stop() == 0
        logs = daemon.logs()
        assert NEW_TOKEN not in logs and OLD_TOKEN not in logs and API_KEY not in logs
