"""TopS.II reply classes (pure): result:"fail" is never a success; each code has its retry class."""

from __future__ import annotations

import json
import random
import urllib.parse

import pytest

from telephonyd.ameyo.routing import ROOT_KEYS as ROUTING_ROOT_KEYS
from telephonyd.upstream.tops import ROOT_KEYS, classify, form_body


def fail(code: str, sub: str = "") -> bytes:
    return json.dumps({"result": "fail", "messageCode": code, "message": "m", "subMessageCode": sub,
                       "subMessage": "s"}).encode()


SUCCESS = json.dumps({"result": "success", "messageCode": "", "message": ""}).encode()


@pytest.mark.parametrize(("status", "body", "attempts", "outcome", "unhealthy"), [
    (200, SUCCESS, 0, "delivered", False),
    (200, fail("WTYP0030"), 0, "dead", True),  # authentication: a person must act
    (200, fail("WTYP0020"), 0, "dead", True),  # licence
    (200, fail("ETYP0040"), 7, "retry", False),  # application error: retried with backoff
    (200, fail("WTYP0010", "WPRDEXTC3201"), 0, "retry", False),  # call does not exist (yet)
    (200, fail("WTYP0010", "WPRDEXTC3201"), 2, "retry", False),
    (200, fail("WTYP0010", "WPRDEXTC3201"), 3, "dead", False),  # after call_missing_retries
    (200, fail("WTYP0010", "WPRDEXTC3202"), 0, "dead", False),  # staff unknown
    (200, fail("WTYP0010", "WPRDEXTC3203"), 0, "dead", False),  # staff not logged in
    (200, b"<html>maintenance</html>", 0, "retry", False),
    (200, b"[1, 2]", 0, "retry", False),
    (200, json.dumps({"result": "maybe"}).encode(), 0, "dead", False),
    (500, b"<html>oops</html>", 0, "retry", False),
    (503, b"", 0, "retry", False),
    (429, b"slow down", 0, "retry", False),
    (401, b"", 0, "dead", True),
    (404, b"not found", 0, "dead", False),
])
def test_classify(status, body, attempts, outcome, unhealthy):
    delivery = classify(status, body, attempts=attempts, call_missing_retries=3)
    assert delivery.outcome == outcome
    assert delivery.unhealthy == unhealthy
    if outcome != "delivered":
        assert delivery.error


def test_fail_error_names_the_codes():
    delivery = classify(200, fail("WTYP0010", "WPRDEXTC3202"), attempts=0, call_missing_retries=3)
    assert delivery.error.startswith("WTYP0010/WPRDEXTC3202")


def test_retry_after_is_honoured():
    assert classify(429, b"", attempts=0, call_missing_retries=3, retry_after="12").retry_after_s == 12.0


def test_sender_and_routing_agree_on_root_keys():
    assert ROOT_KEYS == ROUTING_ROOT_KEYS


def test_form_body_is_urlencode_of_the_json_text():
    rng = random.Random(18)
    alphabet = [chr(c) for c in range(0x250)] + list("日本語テスト😀 +&=%\"'<>~._-")
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert form_body(text) == urllib.parse.urlencode({"jsonData": text}, doseq=True, encoding="utf-8").encode()
