"""``GET /metrics`` scraped from a running HTTP listener, with a real FastAGI server behind it."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from telephonyd.config import FastAGIConfig, HTTPConfig
from telephonyd.fastagi import AGISession, FastAGIServer
from telephonyd.metrics import MetricsExporter, MetricSources
from telephonyd.web import HTTPServer
from tests.fakes.agi import FakeChannel, run_session

TOKEN = "metrics-admin-token"


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_scrape_counts_agi_sessions_and_http_requests() -> None:
    async def handler(session: AGISession) -> str:
        await session.get_variable("DIALSTATUS")
        return "QUEUED"

    fastagi = FastAGIServer(FastAGIConfig(listen="127.0.0.1:0"), {"call_log": handler})

    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    http = HTTPServer(HTTPConfig(listen="127.0.0.1:0", admin_token=TOKEN), status=status, ready=ready)
    components = {"fastagi": fastagi, "http": http}
    exporter = MetricsExporter(MetricSources(node_id="c1", version="t", components=lambda: components),
                               [*fastagi.collectors(), *http.collectors()])
    http.add_routes(exporter.routes(), auth="admin")
    await fastagi.start()
    await http.start()
    try:
        agi_host, agi_port = fastagi.bound_addresses[0]
        chan = FakeChannel.synthetic({"DIALSTATUS": "BUSY"}, extension="h")
        for _ in range(3):
            assert (await run_session(agi_host, agi_port, chan)).result == "QUEUED"
        health = await run_session(agi_host, agi_port, FakeChannel.synthetic(script="health"))
        assert health.result == "OK"

        host, port = http.bound_addresses[0]
        url = f"http://{host}:{port}/metrics"
        async with aiohttp.ClientSession() as client:
            async with client.get(url) as resp:
                assert resp.status == 401  # the admin token guards the metrics
                assert TOKEN not in await resp.text()
            async with client.get(f"http://{host}:{port}/healthz") as resp:
                assert resp.status == 200
            async with client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await resp.text()
    finally:
        await http.stop(1)
        await fastagi.stop(1)

    s = samples(text)
    assert s[("telephonyd_agi_sessions_total", (("result", "QUEUED"), ("script", "call_log")))] == 3
    assert s[("telephonyd_agi_sessions_total", (("result", "OK"), ("script", "health")))] == 1
    assert s[("telephonyd_agi_session_duration_seconds_count", ())] == 4
    assert s[("telephonyd_component_up", (("component", "fastagi"),))] == 1
    http_key = ("telephonyd_http_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "401")))
    assert s[http_key] == 1
    assert s[("telephonyd_http_requests_total", (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 1
    assert s[("process_cpu_seconds_total", ())] > 0
