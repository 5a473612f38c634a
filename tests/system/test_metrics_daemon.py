"""``GET /metrics`` of the daemon as a process with the AMI side on: AMI events by type, contacts and
agents by state, and the AGI and upstream figures after real sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import FakeDIDOptimizer

from .daemon import Daemon

pytestmark = pytest.mark.system


async def scrape(daemon: Daemon) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        async with client.get(daemon.base_url + "/metrics", headers=daemon.headers) as resp:
            assert resp.status == 200
            text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def wait_metric(daemon: Daemon, key: tuple, predicate: Callable[[float], bool], timeout: float = 10) -> dict:
    """Scrape until ``predicate(value of key)`` holds; returns that scrape."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await scrape(daemon)
        if key in last and predicate(last[key]):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never satisfied the condition; last: {last.get(key) if last else None}")


async def test_metrics_follow_asterisk_and_the_call_path(daemon_factory: Callable[..., Daemon]) -> None:
    async with FakeAMIServer(secret="metrics-ami") as ami, FakeDIDOptimizer() as did:
        ami.add_endpoint("1010")
        ami.add_endpoint("1011")
        ami.register("1010")
        daemon = daemon_factory({
            "ami": {"enabled": True, "port": ami.port, "secret": "metrics-ami"},
            "did_optimizer": {"enabled": True, "base_url": did.base_url},
            "outbox": {"poll_interval_s": 0.1},
        })
        daemon.start()
        await daemon.wait_status(lambda s: s["components"]["presence"]["state"] == "seeded")
        ami.register("1011")  # live events: ContactStatus x2, PeerStatus, DeviceStateChange
        s = await wait_metric(daemon, ("telephonyd_contacts", (("status", "Reachable"),)), lambda v: v == 2)
        assert s[("telephonyd_ami_connected", ())] == 1
        assert s[("telephonyd_ami_events_total", (("event", "ContactStatus"),))] >= 2
        assert s[("telephonyd_ami_events_total", (("event", "PeerStatus"),))] >= 1
        assert s[("telephonyd_ami_last_event_age_seconds", ())] < 30
        assert s[("telephonyd_agents_online", ())] == 2

        chan = FakeChannel.synthetic({"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "campaign_id": "M"},
                                     args=["ANSWER", "16"], uniqueid="1795600000.1", extension="h")
        assert (await run_session("127.0.0.1", daemon.agi_port, chan)).result == "QUEUED"
        delivered = ("telephonyd_outbox_rows", (("state", "delivered"), ("target", "did_optimizer")))
        s = await wait_metric(daemon, delivered, lambda v: v == 1)  # the row's delivered state is committed
        assert s[("telephonyd_agi_sessions_total", (("result", "QUEUED"), ("script", "call_log")))] == 1
        assert s[("telephonyd_upstream_requests_total", (("outcome", "delivered"), ("target", "did_optimizer")))] == 1
        assert s[("telephonyd_upstream_request_duration_seconds_count", (("target", "did_optimizer"),))] == 1

        ami.unregister(next(iter(ami.contacts)))
        await wait_metric(daemon, ("telephonyd_agents_online", ()), lambda v: v == 1)
        assert daemon.stop() == 0
