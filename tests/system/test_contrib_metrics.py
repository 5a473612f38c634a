"""contrib/: every metric the Grafana dashboard or the Prometheus rules query is in the daemon's
/metrics (the daemon as a process with AMI, MQTT, an upstream and one delivered outcome), and the
rules file passes ``promtool check rules`` when promtool is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from telephonyd.diagnostics.testoutcome import SyntheticChannel, synthetic_uniqueid
from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import FakeDIDOptimizer

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "contrib" / "prometheus" / "telephonyd-alerts.yml"
DASHBOARD = REPO / "contrib" / "grafana" / "telephonyd-dashboard.json"
_METRIC = re.compile(r"\b(telephonyd_[a-z_]+)\b")
_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count")


def queried_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is queried (rule alert names, panel titles)."""
    found: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for name in _METRIC.findall(rule["expr"]):
                found.setdefault(name, set()).add(rule["alert"])
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            for name in _METRIC.findall(target["expr"]):
                found.setdefault(name, set()).add(panel["title"])
    return found


def test_rules_and_dashboard_are_well_formed() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"TelephonydAMIDown", "TelephonydOutboxBacklogOld", "TelephonydDeadLettersGrowing",
            "TelephonydUpstreamErrors", "TelephonydFastAGIRefusals", "TelephonydEventLoopLag"} <= names
    assert all(r["annotations"]["summary"] and r["labels"]["severity"] for r in rules)
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len(queried_metrics()) >= 15


def test_promtool_check_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        import os

        import pytest

        reason = "promtool is not installed (Debian package prometheus)"
        if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":  # .ci/run installs it
            pytest.fail(reason + " and TELEPHONYD_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_every_queried_metric_is_exported(daemon_factory, mqtt_broker, topic_prefix) -> None:
    host, port = mqtt_broker
    async with FakeAMIServer(secret="ami-s3cret") as ami, FakeDIDOptimizer() as fake:
        ami.add_endpoint("1010")
        ami.register("1010")
        daemon = daemon_factory({
            "ami": {"enabled": True, "port": ami.port, "secret": "ami-s3cret", "auth": "md5"},
            "mqtt": {"enabled": True, "url": f"mqtt://{host}:{port}", "base_topic": topic_prefix},
            "did_optimizer": {"enabled": True, "base_url": fake.base_url},
            "outbox": {"poll_interval_s": 0.2},
        })
        daemon.start()
        channel = SyntheticChannel(synthetic_uniqueid(time.time()), port=daemon.agi_port)
        assert await channel.session(False) == "STARTED" and await channel.session(True) == "QUEUED"
        await daemon.wait_status(lambda s: s["outbox"].get("by_state", {}).get("delivered") == 1)
        async with aiohttp.ClientSession() as http:
            async with http.get(daemon.base_url + "/metrics", headers=daemon.headers) as resp:
                assert resp.status == 200
                text = await resp.text()
        assert daemon.stop() == 0
    exported: set[str] = set()
    for family in text_string_to_metric_families(text):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    missing = {name: sorted(where) for name, where in queried_metrics().items()
               if not any(name.removesuffix(s) + t in exported for s in _SUFFIXES for t in _SUFFIXES)}
    assert missing == {}, missing
