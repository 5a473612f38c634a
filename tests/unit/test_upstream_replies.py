"""How upstream replies become delivery outcomes (status, body, Retry-After), without sockets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from telephonyd.outbox import Delivery
from telephonyd.upstream import (
    classify_reply,
    classify_status,
    excerpt,
    failure_text,
    retry_after_seconds,
)
from telephonyd.upstream.replies import scrub

NOW = 1_795_300_000.0
OK = json.dumps({"success": True, "message": "Call result recorded", "data": {"recordId": 7}}).encode()
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>" + b"x" * 500 + b"</body></html>"
RATE_TEXT = b"Too many requests from this IP, please try again later."


def j(data: object) -> bytes:
    return json.dumps(data).encode()


# status, headers, body -> outcome, unhealthy, retry_after_s, error starts with
TABLE = [
    (200, {}, OK, "delivered", False, None, None),
    (201, {}, OK, "delivered", False, None, None),
    (200, {}, j({"success": False, "message": "Campaign not found"}), "dead", False, None, "HTTP 200: Campaign not found"),
    (200, {}, j({"success": False, "error": "bad phone"}), "dead", False, None, "HTTP 200: bad phone"),
    (200, {}, b"<html>maintenance</html>", "dead", False, None, "HTTP 200 without success:true: <html>maintenance</html>"),
    (200, {}, j({"message": "ok"}), "dead", False, None, "HTTP 200 without success:true"),
    (200, {}, j({"success": "true"}), "dead", False, None, "HTTP 200 without success:true"),
    (204, {}, b"", "dead", False, None, "HTTP 204 without success:true"),
    (301, {"Location": "https://x"}, b"", "retry", True, None, "HTTP 301"),
    (400, {}, j({"success": False, "error": "Missing required fields: uniqueid"}), "dead", False, None,
     "HTTP 400: Missing required fields: uniqueid"),
    (401, {}, j({"success": False, "message": "Invalid API key"}), "dead", True, None, "HTTP 401: Invalid API key"),
    (401, {}, b"Unauthorized", "dead", True, None, "HTTP 401: Unauthorized"),
    (403, {}, b"<html>Forbidden</html>", "dead", False, None, "HTTP 403: <html>Forbidden</html>"),
    (404, {}, j({"success": False, "message": "Not found"}), "dead", False, None, "HTTP 404: Not found"),
    (408, {}, b"", "retry", False, None, "HTTP 408"),
    (409, {}, j({"success": False, "message": "conflict"}), "dead", False, None, "HTTP 409: conflict"),
    (429, {"Retry-After": "120"}, RATE_TEXT, "retry", False, 120.0, "HTTP 429: Too many requests"),
    (429, {}, RATE_TEXT, "retry", False, None, "HTTP 429: Too many requests"),
    (429, {"Retry-After": "soon"}, RATE_TEXT, "retry", False, None, "HTTP 429"),
    (500, {}, j({"success": False, "message": "Internal server error"}), "retry", False, None, "HTTP 500: Internal server error"),
    (500, {}, j({"success": False, "fallback": {"number": "1"}}), "retry", False, None, 'HTTP 500: {"success": false'),
    (502, {}, HTML_502, "retry", False, None, "HTTP 502: <html><head><title>502 Bad Gateway"),
    (503, {"Retry-After": "30"}, b"", "retry", False, 30.0, "HTTP 503"),
    (504, {}, b"\xff\xfe garbage", "retry", False, None, "HTTP 504:"),
]


@pytest.mark.parametrize(("status", "headers", "body", "outcome", "unhealthy", "retry_after", "error"), TABLE)
def test_classification_table(status, headers, body, outcome, unhealthy, retry_after, error) -> None:
    delivery = classify_reply(status, headers, body, NOW)
    assert delivery.outcome == outcome
    assert delivery.status == status
    assert delivery.unhealthy is unhealthy
    assert delivery.retry_after_s == retry_after
    if error is None:
        assert delivery.error is None
    else:
        assert delivery.error is not None and delivery.error.startswith(error)
        assert len(delivery.error) <= len("HTTP 200 without success:true: ") + 200 + 30


def test_delivered_keeps_an_excerpt_of_the_answer() -> None:
    delivery = classify_reply(200, {}, OK, NOW)
    assert delivery.response is not None and '"recordId": 7' in delivery.response


def test_non_json_error_text_is_status_plus_first_200_characters() -> None:
    delivery = classify_reply(502, {}, HTML_502, NOW)
    assert delivery.error == "HTTP 502: " + excerpt(HTML_502)
    assert len(excerpt(HTML_502)) == 200


def test_classify_status_leaves_2xx_to_the_caller() -> None:
    assert classify_status(200, b"anything") is None
    assert classify_status(299, b"") is None
    assert classify_status(500, b"") == Delivery("retry", error="HTTP 500", status=500)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), ("", None), ("  ", None), ("120", 120.0), (" 5 ", 5.0), ("1.5", 1.5), ("-3", 0.0),
        ("nan", None), ("inf", None), ("soon", None),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, UTC), usegmt=True), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: unreadable, not guessed
    ],
)
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


def test_http_date_retry_after_reaches_the_delivery() -> None:
    header = format_datetime(datetime.fromtimestamp(NOW + 42, UTC), usegmt=True)
    assert classify_reply(429, {"Retry-After": header}, RATE_TEXT, NOW).retry_after_s == 42.0


def test_failure_text_prefers_json_message_then_raw_body() -> None:
    assert failure_text(400, j({"success": False, "message": "", "error": "bad"})) == "HTTP 400: bad"
    assert failure_text(400, j(["not", "an", "object"])) == 'HTTP 400: ["not", "an", "object"]'
    assert failure_text(400, b"") == "HTTP 400"
    assert failure_text(400, b"line one\n\n  line two\t") == "HTTP 400: line one line two"


def test_scrub_hides_secrets() -> None:
    assert scrub("key did_abc in text did_abc", ["did_abc", None, ""]) == "key ******** in text ********"
