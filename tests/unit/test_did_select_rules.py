"""Pure rules of ``did_select``: reply verdicts, DID normalization, channel settings, the breaker."""

from __future__ import annotations

import json

import pytest

from telephonyd.config import validate
from telephonyd.didselect import CircuitBreaker, SelectionQuery, channel_settings, judge, normalize_did
from telephonyd.ttlmap import TTLMap
from telephonyd.didselect.reply import area_code_of, fallback_did
from telephonyd.errors import ConfigError


def body(data: object) -> bytes:
    return json.dumps(data).encode()


SELECTED = {"success": True, "did": {"number": "+14155550123", "description": "d", "carrier": "c",
                                     "location": "CA", "is_fallback": False}, "metadata": {}}  # fmt: skip


@pytest.mark.parametrize(
    ("number", "expected"),
    [("+14155550123", "14155550123"), ("4155550123", "4155550123"), (" +4155550123 ", "4155550123"),
     (4155550123, "4155550123"), ("+1415555", None), ("", None), (None, None), ("415-555-0123", None),
     ("++4155550123", None), ("41555501２3", None), (True, None)],
)  # fmt: skip
def test_normalize_did(number: object, expected: str | None) -> None:
    assert normalize_did(number) == expected


def test_judge_a_selection() -> None:
    v = judge(200, body(SELECTED))
    assert (v.did, v.is_fallback, v.reason, v.breaker_failure) == ("14155550123", False, None, False)
    fallback = {**SELECTED, "did": {**SELECTED["did"], "is_fallback": True}}  # type: ignore[dict-item]
    assert judge(200, body(fallback)).is_fallback is True


def test_judge_empty_pool_is_not_a_breaker_failure() -> None:
    v = judge(500, body({"success": False, "fallback": {"number": "+14155550199", "is_fallback": True}}))
    assert (v.did, v.reason, v.breaker_failure, v.server_fallback) == (None, "empty_pool", False, "14155550199")


@pytest.mark.parametrize(
    ("status", "raw", "reason", "breaker_failure"),
    [(500, body({"success": False, "message": "boom"}), "http_5xx", True),
     (502, b"<html>502 Bad Gateway</html>", "http_5xx", True),
     (200, b'{"success": true, "did": {"number": "+1', "malformed", True),
     (200, body({"success": False, "message": "Campaign not found"}), "malformed", True),
     (200, body({"success": True, "did": "4155550123"}), "malformed", True),
     (200, b"ok", "malformed", True),
     (200, body({**SELECTED, "did": {"number": "12345"}}), "invalid_did", False),
     (401, body({"success": False, "message": "Invalid API key"}), "http_4xx", False),
     (429, b"Too many requests", "http_4xx", False),
     (302, b"", "malformed", True)],
)  # fmt: skip
def test_judge_failures(status: int, raw: bytes, reason: str, breaker_failure: bool) -> None:
    v = judge(status, raw)
    assert not v.ok
    assert (v.reason, v.breaker_failure) == (reason, breaker_failure)


def test_channel_settings() -> None:
    assert channel_settings("14155550123", status="SUCCESS", fallback=False) == [
        ("OPTIMIZER_DID", "14155550123"), ("OPTIMIZER_STATUS", "SUCCESS"), ("OPTIMIZER_FALLBACK", "NO"),
        ("CALLERID(num)", "14155550123"),
    ]  # fmt: skip
    assert channel_settings(None, status="FAILURE", fallback=False) == [("OPTIMIZER_STATUS", "FAILURE")]


def test_query_params_leave_out_empty_fields_and_the_lead() -> None:
    q = SelectionQuery(campaign="C1", agent="", lead="77", customer_phone="4155550123", area_code="415")
    assert q.params() == {"campaign_id": "C1", "customer_phone": "4155550123", "customer_area_code": "415"}


@pytest.mark.parametrize(("phone", "area"), [("4155550123", "415"), ("14155550123", "415"),
                                             ("914155550123", "415"), ("+1 (415) 555-0123", "415"), ("5550123", "")])  # fmt: skip
def test_area_code_of(phone: str, area: str) -> None:
    assert area_code_of(phone) == area


def test_fallback_did_per_campaign_then_any() -> None:
    table = {"A": "+14155550100", "*": "4155550111"}
    assert fallback_did(table, "A") == "14155550100"
    assert fallback_did(table, "B") == "4155550111"
    assert fallback_did(table, "") == "4155550111"
    assert fallback_did({"A": "+14155550100"}, "B") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_failures_in_a_row_and_probes_once() -> None:
    clock = Clock()
    b = CircuitBreaker(3, 5.0, clock)
    for _ in range(2):
        assert b.allow()
        b.record(False)
    assert b.allow()
    b.record(True)  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert b.state == "open" and b.opened_total == 1
    assert not b.allow()
    clock.now += 4.9
    assert not b.allow() and not b.probe_due()
    clock.now += 0.2
    assert b.probe_due()
    assert b.allow() and b.state == "half_open"
    assert not b.allow(), "one probe at a time"
    b.record(False)
    assert b.state == "open" and b.opened_total == 2
    assert not b.allow()
    clock.now += 5.0
    assert b.allow()
    b.record(True)
    assert b.state == "closed" and b.allow() and b.consecutive_failures == 0


def test_breaker_cancelled_probe_frees_the_slot() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 1.0, clock)
    b.allow()
    b.record(False)
    clock.now += 1.0
    assert b.allow()
    b.release()
    assert b.state == "open"
    assert b.allow(), "the next request probes again"


def test_ttl_map_expires_and_evicts() -> None:
    clock = Clock()
    m: TTLMap[str, int] = TTLMap(ttl_s=10, max_entries=2, clock=clock)
    m.put("a", 1)
    m.put("b", 2)
    m.put("c", 3)
    assert m.get("a") is None and m.get("c") == 3 and m.evicted == 1
    clock.now += 10
    assert m.get("b") is None and m.get("c") is None


@pytest.mark.parametrize(
    ("section", "path"),
    [({"budget_s": 1.01}, "did_select.budget_s"), ({"budget_s": 0}, "did_select.budget_s"),
     ({"fallback_dids": {"A": "12345"}}, "did_select.fallback_dids.A"),
     ({"variables": {"campaign": ["${X}"]}}, "did_select.variables.campaign"),
     ({"breaker_failures": 0}, "did_select.breaker_failures"), ({"nope": 1}, "did_select.nope")],
)  # fmt: skip
def test_config_is_validated(section: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({"did_select": section})
    assert err.value.path == path


def test_config_defaults() -> None:
    c = validate({}).did_select
    assert (c.enabled, c.budget_s, c.reuse_ttl_s, c.fallback_dids) == (False, 0.3, 0.0, {})


def test_reload_applies_the_api_url_key_and_budget_live() -> None:
    from telephonyd.didselect import DIDSelectService
    from telephonyd.reload import changed_keys
    from telephonyd.store import Store

    old = validate({"did_optimizer": {"base_url": "http://127.0.0.1:5000"}, "did_select": {"enabled": True}})
    new = validate({"did_optimizer": {"base_url": "http://127.0.0.1:6000/", "api_key": "did_" + "cd" * 32},
                    "did_select": {"enabled": True, "budget_s": 0.5, "breaker_failures": 9,
                                   "variables": {"campaign": ["MYCAMP"]}}})  # fmt: skip
    service = DIDSelectService(old.did_select, old.did_optimizer, Store("sqlite+aiosqlite:///:memory:"))
    service.reconfigure(new)
    assert service.client.url == "http://127.0.0.1:6000/api/v1/dids/next"
    assert service.client._api_key == "did_" + "cd" * 32  # noqa: SLF001
    assert service.handler.config.budget_s == 0.5 and service.breaker.failures == 9
    assert service.handler.query({"MYCAMP": "X", "campaign_id": "Y"}, {}).campaign == "X"
    assert "did_select.budget_s" in changed_keys(old, new)


def test_did_show_text() -> None:
    from telephonyd.cli.didselect import format_show

    data = {
        "selection": {"result": "FAILED", "status": "FAILURE", "did": None, "fallback": False, "latency_ms": 300.4,
                      "request_id": "1795.1", "campaign": "C1", "area_code": "415", "reason": "timeout",
                      "detail": "no reply within 0.300s"},
        "report": {"outbox_id": 7, "state": "delivered", "attempts": 1, "phoneNumber": "5550001111",
                   "didUsed": "5550001111", "didRequestId": "1795.1", "didSelection": "FAILED", "dialStatus": "BUSY"},
    }  # fmt: skip
    text = format_show("1795.1", data)
    assert "selection: FAILED status=FAILURE did=- fallback=NO latency=300.4 ms request_id=1795.1" in text
    assert "reason=timeout (no reply within 0.300s)" in text
    assert "report: outbox #7 delivered attempts=1 phoneNumber=5550001111 didUsed=5550001111 didRequestId=1795.1" in text
    assert format_show("x", {"selection": None, "report": None}).splitlines()[1:] == [
        "selection: none recorded", "report: none queued"]
