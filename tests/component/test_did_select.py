"""The ``did_select`` route behind the real FastAGI server, against a fake Asterisk and a fake DID
Optimizer on loopback: whatever the API does, the session ends within the budget (plus 50 ms) and
the channel variables say what happened; the selection reaches the store and the hangup's report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from telephonyd.calllog import CallLogHandler
from telephonyd.config import CallLogConfig, DIDOptimizerConfig, DIDSelectConfig, FastAGIConfig
from telephonyd.didselect import DIDSelectService
from telephonyd.didselect.schema import metadata as didselect_metadata
from telephonyd.fastagi import FastAGIServer
from telephonyd.store import Store
from tests.fakes.agi import FakeChannel, SessionTranscript, parse_agi_args, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.helpers import running, wait_until

BUDGET_S = 0.3
#: What the issue allows past the budget for the AGI round trips around the request.
SLACK_S = 0.05
API_KEY = "did_" + "ab" * 32
UNIQUEID = "1795237838.11"
CAMPAIGN_VARS = {"campaign_id": "TESTCAMP", "agent": "6666", "lead_id": "12345", "customer_state": "NY"}


@dataclass
class Rig:
    host: str
    port: int
    service: DIDSelectService
    api: FakeDIDOptimizer
    store: Store
    reports: dict[str, dict[str, Any]]


class Enqueue:
    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    async def __call__(self, target: str, key: str, payload: dict[str, Any]) -> Any:
        created = key not in self.rows
        self.rows.setdefault(key, payload)

        @dataclass
        class Queued:
            id: int
            created: bool

        return Queued(len(self.rows), created)


async def make_rig(sqlite_url: str, **overrides: Any) -> AsyncIterator[Rig]:
    async with FakeDIDOptimizer(api_key=API_KEY) as api:
        store = Store(sqlite_url, schemas=[didselect_metadata])
        await store.start()
        config = DIDSelectConfig(enabled=True, budget_s=BUDGET_S, **overrides)
        service = DIDSelectService(config, DIDOptimizerConfig(base_url=api.base_url, api_key=API_KEY), store, node_id="t1")
        reports: dict[str, dict[str, Any]] = {}
        call_log = CallLogHandler(CallLogConfig(), Enqueue(reports), selections=service.selection_for)
        server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"]), {"did_select": service.handler, "call_log": call_log})
        try:
            async with running(service), running(server):
                host, port = server.bound_addresses[0][:2]
                yield Rig(host, port, service, api, store, reports)
        finally:
            await store.close()


@pytest.fixture
async def rig(sqlite_url: str) -> AsyncIterator[Rig]:
    async for r in make_rig(sqlite_url):
        yield r


def channel(uniqueid: str = UNIQUEID, **variables: str) -> FakeChannel:
    return FakeChannel.synthetic(
        {**CAMPAIGN_VARS, **variables}, script="did_select", uniqueid=uniqueid,
        extension="912125550123", callerid="5550001111",
    )  # fmt: skip


async def select(rig: Rig, chan: FakeChannel | None = None) -> SessionTranscript:
    transcript = await run_session(rig.host, rig.port, chan or channel(), timeout=5.0)
    assert transcript.closed_by_server, transcript
    assert transcript.duration < BUDGET_S + SLACK_S, f"session took {transcript.duration:.3f}s"
    return transcript


def settings(t: SessionTranscript) -> dict[str, str]:
    """Every variable the server set: its SET VARIABLEs and the pairs of its EXEC MSet."""
    out = dict(t.variables_set)
    for command in t.commands:
        argv = parse_agi_args(command)
        if [a.upper() for a in argv[:2]] == ["EXEC", "MSET"]:
            out.update(pair.split("=", 1) for pair in argv[2].split(","))
    return out


def assert_left_alone(t: SessionTranscript, result: str = "FAILED") -> None:
    assert settings(t).get("OPTIMIZER_STATUS") == "FAILURE"
    assert "CALLERID(num)" not in settings(t)
    assert "OPTIMIZER_DID" not in settings(t)
    assert t.channel is not None and t.channel.variables["CALLERID(num)"] == "5550001111"
    assert t.result == result


async def test_fast_answer_sets_the_did_as_caller_id(rig: Rig) -> None:
    t = await select(rig)
    assert settings(t) == {
        "OPTIMIZER_DID": "15555550100", "OPTIMIZER_STATUS": "SUCCESS", "OPTIMIZER_FALLBACK": "NO",
        "CALLERID(num)": "15555550100", "TELEPHONYD_RESULT": "SELECTED",
    }  # fmt: skip
    assert t.channel is not None and t.channel.variables["CALLERID(num)"] == "15555550100"
    # One GET FULL VARIABLE for every field, one EXEC MSet, the result: three round trips.
    assert [c.split(" ", 2)[:2] for c in t.commands] == [["GET", "FULL"], ["EXEC", "MSet"], ["SET", "VARIABLE"]]
    (request,) = rig.api.selections()
    assert request.method == "GET"
    assert request.headers["X-Request-ID"] == UNIQUEID
    assert request.headers["x-api-key"] == API_KEY
    assert request.query == {"campaign_id": "TESTCAMP", "agent_id": "6666", "customer_phone": "912125550123",
                             "customer_state": "NY", "customer_area_code": "212"}  # fmt: skip


async def test_slow_api_fails_open_within_the_budget(rig: Rig) -> None:
    rig.api.script_selection(Reply.slow(2.0))
    t = await select(rig)
    assert_left_alone(t)
    assert t.duration >= BUDGET_S * 0.9  # it did wait for the API, up to the budget


async def test_api_that_never_answers_fails_open_within_the_budget(rig: Rig) -> None:
    rig.api.script_selection(Reply.never_answers())
    t = await select(rig)
    assert_left_alone(t)


async def test_empty_pool_500_with_fallback_body_leaves_the_caller_id(rig: Rig) -> None:
    rig.api.script_selection(Reply.empty_pool("+15555550199"))
    t = await select(rig)
    assert_left_alone(t)


async def test_malformed_json_fails_open(rig: Rig) -> None:
    rig.api.script_selection(Reply.malformed())
    t = await select(rig)
    assert_left_alone(t)


async def test_html_502_fails_open(rig: Rig) -> None:
    rig.api.script_selection(Reply.html(502))
    assert_left_alone(await select(rig))


async def test_a_did_shorter_than_ten_digits_never_becomes_the_caller_id(rig: Rig) -> None:
    rig.api.script_selection(Reply.selected("+1555"))
    assert_left_alone(await select(rig))


async def test_api_fallback_did_is_success_with_fallback_yes(rig: Rig) -> None:
    rig.api.script_selection(Reply.selected("+15555550177", is_fallback=True))
    t = await select(rig)
    assert settings(t)["OPTIMIZER_STATUS"] == "SUCCESS"
    assert settings(t)["OPTIMIZER_FALLBACK"] == "YES"
    assert settings(t)["CALLERID(num)"] == "15555550177"


async def test_configured_fallback_did_on_failure(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url, fallback_dids={"TESTCAMP": "+15555550150", "*": "5555550160"}):
        rig.api.script_selection(Reply.error(500), Reply.never_answers())
        t = await select(rig)
        assert settings(t) == {
            "OPTIMIZER_DID": "15555550150", "OPTIMIZER_STATUS": "FAILURE", "OPTIMIZER_FALLBACK": "YES",
            "CALLERID(num)": "15555550150", "TELEPHONYD_RESULT": "FALLBACK",
        }  # fmt: skip
        t = await select(rig, channel("1795237838.12", campaign_id="OTHER"))
        assert settings(t)["CALLERID(num)"] == "5555550160"


async def test_reuse_of_the_last_good_did_when_allowed(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url, reuse_ttl_s=60):
        await select(rig)
        rig.api.script_selection(Reply.error(503))
        t = await select(rig, channel("1795237838.13"))
        assert t.result == "REUSED"
        assert settings(t)["CALLERID(num)"] == "15555550100"
        assert settings(t)["OPTIMIZER_STATUS"] == "FAILURE"
        # Another area code has no good answer to reuse.
        rig.api.script_selection(Reply.error(503))
        t = await select(rig, channel("1795237838.14", CUSTOMER_PHONE="3105550123"))
        assert_left_alone(t)


async def test_breaker_opens_answers_without_asking_then_closes_after_a_probe(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url, breaker_failures=2, breaker_cooldown_s=0.5):
        rig.api.script_selection(Reply.never_answers(), Reply.never_answers())
        for i in range(2):
            assert_left_alone(await select(rig, channel(f"1795237900.{i}")))
        assert rig.service.health()["breaker"]["state"] == "open"
        assert rig.service.health()["ok"] is False
        asked = len(rig.api.selections())
        t = await select(rig, channel("1795237900.5"))
        assert_left_alone(t)
        assert len(rig.api.selections()) == asked, "an open breaker must not ask the API"
        await wait_until(lambda: rig.service.breaker.probe_due(), timeout=2.0, what="cooldown")
        t = await select(rig, channel("1795237900.6"))
        assert t.result == "SELECTED"
        assert len(rig.api.selections()) == asked + 1
        assert rig.service.health()["breaker"]["state"] == "closed"


async def test_selection_is_recorded_and_reported_by_the_hangup(rig: Rig) -> None:
    t = await select(rig)
    assert t.channel is not None
    # The same channel after Dial(): the h extension runs call_log on it (dead channel).
    hangup = t.channel.copy()
    hangup.variables.update({"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "DIALEDTIME": "12", "ANSWEREDTIME": "9"})
    hangup.dead = True
    hangup.env_block = FakeChannel.synthetic(script="call_log", uniqueid=UNIQUEID, extension="h").env_block
    h = await run_session(rig.host, rig.port, hangup)
    assert h.result == "QUEUED"
    report = rig.reports[UNIQUEID]
    assert report["phoneNumber"] == "15555550100"
    assert report["didUsed"] == "15555550100"
    assert report["didRequestId"] == UNIQUEID
    assert report["didSelection"] == "SELECTED"
    stored = await wait_until(lambda: rig.service.recorder.lookup(UNIQUEID), what="selection row")
    assert (stored.did, stored.status, stored.request_id, stored.result) == ("15555550100", "SUCCESS", UNIQUEID, "SELECTED")
    assert 0 < stored.latency_ms < (BUDGET_S + SLACK_S) * 1000
    # Another instance (nothing in memory) finds it in the store.
    rig.service.recent = type(rig.service.recent)(ttl_s=1, max_entries=1)
    assert (await rig.service.selection_for(UNIQUEID)) == stored


async def test_failed_selection_is_reported_with_the_caller_id_the_call_had(rig: Rig) -> None:
    rig.api.script_selection(Reply.error(500))
    t = await select(rig)
    assert t.channel is not None
    hangup = t.channel.copy()
    hangup.variables.update({"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17"})
    hangup.dead = True
    hangup.env_block = FakeChannel.synthetic(script="call_log", uniqueid=UNIQUEID, extension="h").env_block
    assert (await run_session(rig.host, rig.port, hangup)).result == "QUEUED"
    report = rig.reports[UNIQUEID]
    assert report["phoneNumber"] == report["didUsed"] == "5550001111"
    assert report["didSelection"] == "FAILED"
    stored = await wait_until(lambda: rig.service.recorder.lookup(UNIQUEID), what="selection row")
    assert (stored.did, stored.status, stored.reason) == (None, "FAILURE", "http_5xx")


async def test_disabled_route_answers_failure_without_asking(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url):
        rig.service.config = rig.service.handler.config = rig.service.config.model_copy(update={"enabled": False})
        assert_left_alone(await select(rig), result="DISABLED")
        assert rig.api.selections() == []


async def test_sessions_at_once_each_get_their_own_selection(rig: Rig) -> None:
    rig.api.selection_delay_s = 0.02
    transcripts = await asyncio.gather(*(run_session(rig.host, rig.port, channel(f"1795238000.{i}")) for i in range(20)))
    assert all(t.result == "SELECTED" for t in transcripts)
    assert {r.headers["X-Request-ID"] for r in rig.api.selections()} == {f"1795238000.{i}" for i in range(20)}


async def test_a_bad_base_url_fails_open(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url):
        rig.service.client.url = "http://[::1"  # not a URL: the request cannot even be built
        assert_left_alone(await select(rig))


async def test_with_the_breaker_open_a_session_is_two_round_trips(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url, breaker_failures=1, breaker_cooldown_s=60):
        rig.api.script_selection(Reply.error(503))
        assert_left_alone(await select(rig))
        t = await select(rig, channel("1795237901.1"))
        assert_left_alone(t)
        assert t.commands == ['SET VARIABLE OPTIMIZER_STATUS "FAILURE"', 'SET VARIABLE TELEPHONYD_RESULT "FAILED"']
        stored = await wait_until(lambda: rig.service.recorder.lookup("1795237901.1"), what="selection row")
        assert (stored.reason, stored.area_code) == ("breaker_open", "212")  # from the extension dialed


async def test_with_a_fallback_configured_the_breaker_open_path_still_reads_the_campaign(sqlite_url: str) -> None:
    async for rig in make_rig(sqlite_url, breaker_failures=1, breaker_cooldown_s=60, fallback_dids={"TESTCAMP": "4155550150"}):
        rig.api.script_selection(Reply.error(503))
        await select(rig)
        t = await select(rig, channel("1795237901.2"))
        assert t.result == "FALLBACK" and settings(t)["CALLERID(num)"] == "4155550150"


async def test_a_caller_hanging_up_meanwhile_still_gets_the_variables(rig: Rig) -> None:
    # HANGUP arrives before the reply to the 2nd command (EXEC MSet); EXEC, like SET VARIABLE, is
    # allowed on a dead channel (res_agi.c's command table), so the session ends normally.
    t = await run_session(rig.host, rig.port, channel(), hangup_before_command=2, timeout=5.0)
    assert t.hangup_sent and t.replies[1] == "200 result=0"
    assert settings(t)["CALLERID(num)"] == "15555550100" and t.result == "SELECTED"
