"""The newcomer's diagnostics against the daemon as a process: ``test-outcome`` follows one synthetic
call to a fake DID Optimizer; ``outbox why`` explains a row that waits; ``agents`` with AMI off."""

from __future__ import annotations

import asyncio
import re

from tests.fakes.did_optimizer import FakeDIDOptimizer
from tests.system.cli_run import telephonyd


async def test_test_outcome_reaches_the_fake_upstream(daemon_factory) -> None:
    async with FakeDIDOptimizer(api_key="k-test") as fake:
        daemon = daemon_factory({"did_optimizer": {"enabled": True, "base_url": fake.base_url, "api_key": "k-test"},
                                 "outbox": {"poll_interval_s": 0.2}})
        daemon.start()
        done = await asyncio.to_thread(telephonyd, "test-outcome", "-c", str(daemon.config_path), "--verbose")
        assert done.returncode == 0, done.stdout + done.stderr
        uniqueid = re.search(r"call (\d+\.\d+) to agi://", done.stdout).group(1)
        assert "start stage: STARTED" in done.stdout and "end (h) stage: QUEUED" in done.stdout
        assert "delivered: the DID Optimizer answered 200" in done.stdout
        assert ">>> GET FULL VARIABLE" in done.stdout and "510" not in done.stdout
        sent = fake.requests_for(uniqueid)
        assert len(sent) == 1
        assert sent[0].json["dialStatus"] == "ANSWER" and sent[0].json["hangupCause"] == 16
        assert sent[0].json["campaignId"] == "TESTOUTCOME" and sent[0].json["sipHangupCause"] == 200


async def test_outbox_why_and_test_outcome_with_sending_off(daemon_factory) -> None:
    daemon = daemon_factory({"outbox": {"poll_interval_s": 0.2}})
    daemon.start()
    done = await asyncio.to_thread(telephonyd, "test-outcome", "-c", str(daemon.config_path), "--timeout", "1")
    assert done.returncode == 1
    assert "did_optimizer.enabled is false" in done.stdout
    row_id = re.search(r"outbox: row (\d+) pending", done.stdout).group(1)
    assert "target did_optimizer is disabled (did_optimizer.enabled: false)" in done.stdout
    why = await asyncio.to_thread(telephonyd, "outbox", "why", row_id, "-c", str(daemon.config_path))
    assert why.returncode == 0, why.stderr
    assert f"row {row_id}: target did_optimizer" in why.stdout and "state pending" in why.stdout
    assert "is disabled" in why.stdout
    missing = await asyncio.to_thread(telephonyd, "outbox", "why", "99999", "-c", str(daemon.config_path))
    assert missing.returncode == 1 and "no row 99999" in missing.stderr


async def test_agents_with_ami_off_says_how_to_enable_it(daemon_factory) -> None:
    daemon = daemon_factory({"http": {"public_readyz": True}})
    daemon.start()
    done = await asyncio.to_thread(telephonyd, "agents", "-c", str(daemon.config_path))
    assert done.returncode == 1
    assert "AMI is off (ami.enabled: false in" in done.stderr and "404" not in done.stderr
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{daemon.http_port}/readyz") as resp:
            assert resp.status == 200 and await resp.json() == {"ready": True}


async def test_test_outcome_reaches_telephonyd_sink(daemon_factory, tmp_path) -> None:
    """The README's newcomer path: ``telephonyd sink`` as the upstream, ``test-outcome`` delivered to it."""
    import os
    import subprocess
    import sys

    from tests.helpers import free_port, wait_until

    port = free_port()
    log = tmp_path / "sink.out"
    with log.open("w") as out:
        sink = subprocess.Popen([sys.executable, "-m", "telephonyd", "sink", "--listen", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        await wait_until(lambda: "listening" in log.read_text(), timeout=15)
        daemon = daemon_factory({"did_optimizer": {"enabled": True, "base_url": f"http://127.0.0.1:{port}",
                                                   "api_key": "k-sink-secret"},
                                 "outbox": {"poll_interval_s": 0.2}})
        daemon.start()
        done = await asyncio.to_thread(telephonyd, "test-outcome", "-c", str(daemon.config_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "delivered: the DID Optimizer answered 200" in done.stdout
        uniqueid = re.search(r"call (\d+\.\d+) to agi://", done.stdout).group(1)
        await wait_until(lambda: uniqueid in log.read_text(), timeout=10)
        printed = log.read_text()
        assert "POST /api/v1/call-results" in printed and '"campaignId": "TESTOUTCOME"' in printed
        assert "k-sink-secret" not in printed and "x-api-key: ********" in printed
    finally:
        sink.terminate()
        sink.wait(timeout=10)
