"""The daemon as a process with the VICIdial source on: dispositions delivered, the source in
``/status``, ``/metrics`` and ``telephonyd vicidial status``; and the refusal to take port 4577."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.fakes.did_optimizer import FakeDIDOptimizer
from tests.helpers import wait_until
from tests.vicidial_rig import VICIdialDB

from .daemon import Daemon
from .test_metrics_daemon import scrape

pytestmark = pytest.mark.system


@pytest.fixture
def vicidial(mariadb_factory):
    db = VICIdialDB(mariadb_factory())
    yield db
    db.close()


async def test_daemon_reports_dispositions_and_shows_the_source(daemon_factory: Callable[..., Daemon], vicidial) -> None:
    db = vicidial
    sale, na = db.uniqueid(), db.uniqueid()
    db.dial(11, "3125550111")
    db.log_call(sale, 11, "INCALL")
    db.log_call(na, 12, "NA")
    async with FakeDIDOptimizer() as did:
        daemon = daemon_factory({
            "did_optimizer": {"enabled": True, "base_url": did.base_url},
            "outbox": {"poll_interval_s": 0.1},
            "vicidial": {"enabled": True, "url": db.readonly_url, "poll_interval_s": 0.2},
        })
        daemon.start()
        await wait_until(lambda: did.requests_for(na), timeout=20, what="NA delivered")
        db.disposition(sale, "SALE", length=61)
        await wait_until(lambda: did.requests_for(sale), timeout=20, what="SALE delivered")
        status = await daemon.wait_status(lambda s: s["components"]["vicidial"]["tables"]["vicidial_log"]
                                          .get("reported") == 2)
        source = status["components"]["vicidial"]
        assert source["ok"] and source["reread_window_s"] == 7200 and source["last_error"] is None
        assert source["tables"]["vicidial_log"]["lag_s"] == 0
        metrics = await scrape(daemon)
        assert metrics[("telephonyd_vicidial_reported_total", (("table", "vicidial_log"),))] == 2
        assert ("telephonyd_vicidial_lag_seconds", (("table", "vicidial_log"),)) in metrics
        cli = subprocess.run([sys.executable, "-m", "telephonyd", "vicidial", "status", "-c", str(daemon.config_path)],
                             capture_output=True, text=True, timeout=30, cwd=daemon.workdir, env=daemon.env)
        assert cli.returncode == 0, cli.stderr
        assert "vicidial_log" in cli.stdout and "reported=2" in cli.stdout and "last error: none" in cli.stdout
        assert daemon.stop() == 0
        # Daemon stopped: the checkpoint comes from the store and the newest row from VICIdial.
        cli = subprocess.run([sys.executable, "-m", "telephonyd", "vicidial", "status", "-c", str(daemon.config_path)],
                             capture_output=True, text=True, timeout=30, cwd=daemon.workdir, env=daemon.env)
        assert cli.returncode == 0, cli.stderr
        assert "[store]" in cli.stdout and "reported=2" in cli.stdout
    [body] = [r.json for r in did.requests_for(sale)]
    assert body["disposition"] == "SALE" and body["didUsed"] == "3125550111" and body["statusFlags"]["sale"]


def test_daemon_refuses_fastagi_log_pl_port(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory({"fastagi": {"listen": ["127.0.0.1:4577"]}, "vicidial": {"fastagi_log_present": True}})
    daemon.start(wait_ready=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=30) == 78
    assert "4577" in daemon.logs()
