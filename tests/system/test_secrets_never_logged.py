"""The daemon as a process with every secret configured, driven into errors: wrong admin token, wrong
Ameyo token, the DID Optimizer answering 500 and 401, AMI refusing the login, TopS.II refusing the
key, an unreachable MQTT broker, an oversized callback. No secret may appear in a log line, an HTTP
answer or an sd_notify status; every JSON log line about a call carries its uniqueid."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.fakes.tops import FakeTops

from .daemon import Daemon, free_port

pytestmark = pytest.mark.system

ADMIN_TOKEN = "adm-Secret-7f3a9c11"
DID_KEY = "did_" + "c0ffee12" * 8
AMI_SECRET = "ami-Secret-5be2"
MQTT_PASSWORD = "mqtt-Secret-19d4"
AMEYO_TOKEN = "ameyo-Secret-a8e1"
TOPS_TEST_KEY = "tops-test-Secret-3c77"
TOPS_PROD_KEY = "tops-prod-Secret-e402"
SECRETS = (ADMIN_TOKEN, DID_KEY, AMI_SECRET, MQTT_PASSWORD, AMEYO_TOKEN, TOPS_TEST_KEY, TOPS_PROD_KEY)


def hangup_channel(i: int) -> FakeChannel:
    return FakeChannel.synthetic(
        {"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17", "campaign_id": "SECCAMP", "lead_id": str(500 + i)},
        args=["BUSY", "17"], uniqueid=f"1795400000.{i}", linkedid=f"1795400000.{i}", extension="h",
        channel=f"PJSIP/1010-{i:08x}",
    )


def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def fetch(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, str]:
    async with client.get(url, **kwargs) as resp:
        return resp.status, await resp.text()


def about_a_call(record: dict[str, Any]) -> bool:
    logger = record.get("logger", "")
    return (logger.startswith("telephonyd.calllog")
            or (logger == "telephonyd.outbox.dispatcher" and record.get("outbox_target") == "did_optimizer")
            or (logger == "telephonyd.fastagi.server" and "agi_script" in record))


async def test_secrets_stay_out_of_logs_answers_and_status(daemon_factory: Callable[..., Daemon]) -> None:
    did = FakeDIDOptimizer(api_key=DID_KEY)
    did.script(Reply.error(500), Reply.unauthorized())
    tops = FakeTops(api_key="not-the-configured-key")
    async with did, FakeAMIServer(secret="another-secret", bad_login_delay_s=0.05) as ami:
        tops_url = await tops.start()
        daemon = daemon_factory({
            "http": {"admin_token": ADMIN_TOKEN},
            "did_optimizer": {"enabled": True, "base_url": did.base_url, "api_key": DID_KEY},
            "outbox": {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_interval_s": 0.1},
            "ami": {"enabled": True, "port": ami.port, "secret": AMI_SECRET, "backoff_base_s": 0.05,
                    "backoff_max_s": 0.2},
            "mqtt": {"enabled": True, "url": f"mqtt://127.0.0.1:{free_port()}", "username": "telephonyd",
                     "password": MQTT_PASSWORD, "backoff_max_s": 0.2},
            "ameyo": {"token": AMEYO_TOKEN},
            "tops": {"env": "TEST", "real_send": True, "test": {"base_url": tops_url, "api_key": TOPS_TEST_KEY},
                     "prod": {"api_key": TOPS_PROD_KEY}},
        })
        try:
            daemon.start()
            answers: list[str] = []
            base = daemon.base_url
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
                for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": ADMIN_TOKEN}):
                    for path in ("/status", "/metrics", "/api/ameyo/requests"):
                        status, text = await fetch(client, base + path, headers=headers)
                        assert status == 401, (path, headers)
                        answers.append(text)
                start = "/call_start.php?callId=777&userId=u1&displayPhone=0312345678"
                for query, expected in ((start, 401), (start + "&token=wrong", 401), (start + f"&token={AMEYO_TOKEN}", 200),
                                        (f"/index.php?unique_id=x&token={AMEYO_TOKEN}", 400),
                                        (f"/index.php?token={AMEYO_TOKEN}&pad={'9' * 100_000}", 400)):
                    status, text = await fetch(client, base + query)
                    assert status == expected, (query[:60], text)
                    answers.append(text)

                results = [await run_session("127.0.0.1", daemon.agi_port, hangup_channel(i)) for i in range(3)]
                assert [r.result for r in results] == ["QUEUED"] * 3

                def settled(status: dict) -> bool:
                    by_state = status["outbox"].get("by_state", {})
                    return by_state.get("pending") == 0 and by_state.get("in_flight") == 0 and \
                        by_state.get("delivered", 0) + by_state.get("dead", 0) == 4
                await daemon.wait_status(settled, timeout=20)
                deadline = time.monotonic() + 10
                while len(ami.login_times) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert len(ami.login_times) >= 2, "the AMI login should have been refused and retried"
                for path in ("/status", "/metrics", "/api/ameyo/requests", "/api/agents"):
                    status, text = await fetch(client, base + path, headers=daemon.headers)
                    assert status in (200, 404), path
                    answers.append(text)
                metrics = samples(answers[-3])
            assert daemon.stop() == 0
        finally:
            await tops.close()

    # The errors show in the metrics too.
    assert metrics[("telephonyd_upstream_requests_total", (("outcome", "retry"), ("target", "did_optimizer")))] == 1
    assert metrics[("telephonyd_upstream_requests_total", (("outcome", "dead"), ("target", "did_optimizer")))] == 1
    assert metrics[("telephonyd_upstream_responses_total", (("status", "401"), ("target", "did_optimizer")))] == 1
    assert metrics[("telephonyd_outbox_rows", (("state", "dead"), ("target", "tops")))] == 1
    assert metrics[("telephonyd_outbox_dead_letters", ())] == 2
    assert metrics[("telephonyd_ami_connected", ())] == 0
    assert metrics[("telephonyd_ami_login_failures_total", ())] >= 1
    assert metrics[("telephonyd_ameyo_callbacks_total", (("result", "unauthorized"),))] == 2
    assert metrics[("telephonyd_http_requests_total", (("method", "GET"), ("route", "/call_start.php"),
                                                       ("status", "401")))] == 2
    assert metrics[("telephonyd_mqtt_connected", ())] == 0

    statuses = [r.status for r in did.requests]
    assert 500 in statuses and 401 in statuses and 200 in statuses
    assert tops.violations, "TopS.II should have refused the key"

    logs = daemon.logs()
    notes = "\n".join(daemon.drain_notifications())
    for secret in SECRETS:
        assert secret not in logs, f"{secret} logged"
        assert secret not in notes, f"{secret} in an sd_notify status"
        assert not [a for a in answers if secret in a], f"{secret} in an HTTP answer"

    lines = [line for line in logs.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON event (tracebacks inside)
    messages = {r["msg"] for r in records}
    assert {"AMI session failed", "outbox delivery failed; will retry", "outbox row dead-lettered",
            "admin request refused", "callback refused", "HTTP request refused by the parser"} <= messages
    call_lines = [r for r in records if about_a_call(r)]
    assert len(call_lines) >= 6
    missing = [r for r in call_lines if not r.get("uniqueid")]
    assert not missing, missing[:3]
    deliveries = [r for r in call_lines if r["logger"] == "telephonyd.outbox.dispatcher"]
    assert all(r.get("linkedid") == r["uniqueid"] and r.get("outbox_id") for r in deliveries), deliveries[:3]
    callback_lines = [r for r in records if r["logger"].startswith("telephonyd.ameyo") and r["msg"] != "callback refused"]
    assert callback_lines and all(r.get("request_id") for r in callback_lines if r["msg"].startswith("callback"))


def test_a_config_readable_by_others_holding_a_secret_is_refused_with_78(tmp_path: Path) -> None:
    config = tmp_path / "telephonyd.yml"
    config.write_text(yaml.safe_dump({"http": {"listen": f"127.0.0.1:{free_port()}", "admin_token": ADMIN_TOKEN},
                                      "fastagi": {"listen": f"127.0.0.1:{free_port()}"},
                                      "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/t.db"}}))
    config.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEPHONYD", "NOTIFY_SOCKET"))}
    run = [sys.executable, "-m", "telephonyd", "run", "-c", str(config)]
    refused = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 78
    assert "readable by others" in refused.stderr and ADMIN_TOKEN not in refused.stderr + refused.stdout
    assert not (tmp_path / "t.db").exists()  # refused before anything was opened

    config.chmod(0o640)
    checked = subprocess.run([sys.executable, "-m", "telephonyd", "check-config", "-c", str(config)],
                             env=env, capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0 and ADMIN_TOKEN not in checked.stdout


@pytest.mark.mariadb
async def test_database_password_stays_out_of_logs(daemon_factory: Callable[..., Daemon], mariadb_url: str) -> None:
    """The store password (a MariaDB user's) given by environment: a wrong one (refused: exit 78, the
    reason logged and in the status line, no password), then the right one while it serves."""
    from tests.conftest import _mysql_admin

    database = mariadb_url.rsplit("/", 1)[1]
    user, password = f"td_{uuid.uuid4().hex[:8]}", "Db-Secret-" + uuid.uuid4().hex[:12]
    _mysql_admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        _mysql_admin(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        url = f"mysql+aiomysql://{user}:{{}}@127.0.0.1:3306/{database}"
        wrong = "Db-Wrong-" + uuid.uuid4().hex[:12]
        refused = daemon_factory({}, name="wrong", env={"TELEPHONYD_STORE_URL": url.format(wrong)})
        refused.start(wait_ready=False)
        assert refused.proc is not None
        assert refused.proc.wait(30) == 78  # a refused login is not fixed by waiting
        notes = "\n".join(refused.drain_notifications())
        assert "STATUS=store unusable" in notes and "Access denied" in notes
        assert "the store cannot be used; exiting" in refused.logs() and "Access denied" in refused.logs()
        assert wrong not in refused.logs() and wrong not in notes

        daemon = daemon_factory({}, name="right", env={"TELEPHONYD_STORE_URL": url.format(password)})
        daemon.start()
        result = await run_session("127.0.0.1", daemon.agi_port, hangup_channel(1))
        assert result.result == "QUEUED"
        status, body = await daemon.get("/status")
        assert status == 200 and body["components"]["store"]["dialect"] == "mysql"
        assert daemon.stop() == 0
        assert password not in daemon.logs() and password not in json.dumps(body)
        assert password not in "\n".join(daemon.drain_notifications())
    finally:
        _mysql_admin(f"DROP USER IF EXISTS '{user}'@'%'")
