"""The daemon as a process with ``did_select`` on: a call's DID selection, its outcome report with the
same DID and request id, ``telephonyd did show``, ``/status`` and ``/metrics``; then the API down:
every session still answered, the breaker opens and shows on ``/status``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer
from tests.helpers import wait_until

from .daemon import Daemon
from tests.component.test_did_select import settings

from .test_metrics_daemon import scrape

pytestmark = pytest.mark.system

UNIQUEID = "1795700000.7"


def did_show(daemon: Daemon, uniqueid: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "telephonyd", "did", "show", uniqueid, "--json", "-c", str(daemon.config_path)],
        cwd=daemon.workdir, env=daemon.env, capture_output=True, timeout=60, check=True,
    )
    return json.loads(out.stdout)


async def test_selection_report_lookup_and_breaker(daemon_factory: Callable[..., Daemon]) -> None:
    async with FakeDIDOptimizer() as api:
        daemon = daemon_factory({
            "did_optimizer": {"enabled": True, "base_url": api.base_url},
            "did_select": {"enabled": True, "breaker_failures": 3, "breaker_cooldown_s": 60},
            "outbox": {"poll_interval_s": 0.1},
        })  # fmt: skip
        daemon.start()
        chan = FakeChannel.synthetic({"campaign_id": "SYS"}, script="did_select", uniqueid=UNIQUEID,
                                     extension="914155550123", callerid="5550001111")  # fmt: skip
        t = await run_session("127.0.0.1", daemon.agi_port, chan)
        assert t.result == "SELECTED" and settings(t)["CALLERID(num)"] == "15555550100"
        assert t.channel is not None
        hangup = t.channel.copy()
        hangup.variables.update({"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "ANSWEREDTIME": "5", "DIALEDTIME": "8"})
        hangup.dead = True
        hangup.env_block = FakeChannel.synthetic(script="call_log", uniqueid=UNIQUEID, extension="h").env_block
        assert (await run_session("127.0.0.1", daemon.agi_port, hangup)).result == "QUEUED"
        await wait_until(lambda: api.deliveries[UNIQUEID] == 1, what="report delivered")
        (report,) = api.requests_for(UNIQUEID)
        assert report.json["phoneNumber"] == report.json["didUsed"] == "15555550100"
        assert report.json["didRequestId"] == api.selections()[0].headers["X-Request-ID"] == UNIQUEID

        shown = await wait_until(lambda: (d := did_show(daemon, UNIQUEID))["selection"] and d, what="did show")
        assert shown["selection"]["did"] == "15555550100" and shown["selection"]["request_id"] == UNIQUEID
        assert shown["report"]["didUsed"] == "15555550100" and shown["report"]["didRequestId"] == UNIQUEID
        status = await daemon.wait_status(lambda s: "did_select" in s["components"])
        assert status["components"]["did_select"]["breaker"]["state"] == "closed"
        metrics = await scrape(daemon)
        assert metrics[("telephonyd_did_select_selections_total", (("result", "SELECTED"),))] == 1
        assert metrics[("telephonyd_did_select_breaker_state", ())] == 0

        await api.stop()  # the API is down: connections refused
        results = await asyncio.gather(*(
            run_session("127.0.0.1", daemon.agi_port, FakeChannel.synthetic(script="did_select", uniqueid=f"1795700001.{i}"))
            for i in range(10)
        ))  # fmt: skip
        assert all(r.result == "FAILED" and settings(r)["OPTIMIZER_STATUS"] == "FAILURE" for r in results)
        status = await daemon.wait_status(lambda s: s["components"]["did_select"]["breaker"]["state"] == "open")
        assert status["ok"] is False
        late = await run_session("127.0.0.1", daemon.agi_port, FakeChannel.synthetic(script="did_select", uniqueid="1795700002.1"))
        assert late.result == "FAILED"  # answered without asking: counted as breaker_open below
        metrics = await scrape(daemon)
        assert metrics[("telephonyd_did_select_breaker_state", ())] == 2
        assert metrics[("telephonyd_did_select_failures_total", (("reason", "breaker_open"),))] >= 1
        assert daemon.stop() == 0
