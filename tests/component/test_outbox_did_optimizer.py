"""The outbox dispatcher and the DID Optimizer sender against a fake DID Optimizer (SQLite store).

What a user notices: every call outcome reaches the DID Optimizer exactly once, whatever the API
answers in between; refusals become visible dead letters; a bad API key shows in health.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from telephonyd.logs import ContextFilter, log_context
from telephonyd.outbox import Delivery
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.helpers import wait_until
from tests.outbox_harness import TARGET, RecordingSender, call_result, did_sender, fast_config, outbox_node

API_KEY = "did_" + "ab12" * 16


@pytest.fixture
async def fake() -> AsyncIterator[FakeDIDOptimizer]:
    async with FakeDIDOptimizer(api_key=API_KEY) as server:
        yield server


async def delivered(node, key: str) -> bool:
    return (await node.states()).get(key) == "delivered"


async def test_delivers_the_payload_with_the_api_key(sqlite_url, fake, http_session) -> None:
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "1795237838.1", call_result("1795237838.1"))
        assert result.created
        await wait_until(lambda: delivered(node, "1795237838.1"), what="delivery")
        row = await node.row(result.id)
    assert fake.deliveries == {"1795237838.1": 1}
    request = fake.requests[0]
    assert (request.method, request.path) == ("POST", "/api/v1/call-results")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json == call_result("1795237838.1")
    assert (row["attempts"], row["last_status"], row["last_error"], row["claimed_by"]) == (1, 200, None, "n1")
    assert row["delivered_at"] is not None and row["lease_until"] is None


async def test_no_api_key_header_when_none_is_configured(sqlite_url, http_session) -> None:
    async with FakeDIDOptimizer() as open_fake:
        sender = did_sender(http_session, open_fake.base_url)
        async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
            await node.outbox.enqueue(TARGET, "u1", call_result("u1"))
            await wait_until(lambda: delivered(node, "u1"))
        assert "x-api-key" not in {k.lower() for k in open_fake.requests[0].headers}


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Reply.error(500), "HTTP 500: Internal server error"),
        (Reply.error(503, "maintenance"), "HTTP 503: maintenance"),
        (Reply.html(502), "HTTP 502: <html><head><title>502 Bad Gateway</title>"),
        (Reply.rate_limited(None), "HTTP 429: Too many requests from this IP"),
        (Reply(408, ""), "HTTP 408"),
    ],
    ids=["500", "503", "html-502", "429-plain-text", "408"],
)
async def test_retryable_failure_then_success_delivers_once(sqlite_url, fake, http_session, failure, error) -> None:
    fake.script(failure)
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-retry", call_result("u-retry"))
        await wait_until(lambda: delivered(node, "u-retry"), what="delivery after a retry")
        row = await node.row(result.id)
    assert [r.status for r in fake.requests_for("u-retry")] == [failure.status, 200]
    assert fake.deliveries == {"u-retry": 1}
    assert row["attempts"] == 2 and row["last_status"] == 200


async def test_retry_error_is_kept_while_waiting(sqlite_url, fake, http_session) -> None:
    fake.script(Reply.html(502))
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    config = fast_config(backoff_base_s=30.0, backoff_max_s=60.0)  # the retry stays in the future
    async with outbox_node(sqlite_url, config=config, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-wait", call_result("u-wait"))
        await wait_until(lambda: fake.requests_for("u-wait"))
        row = await wait_until(lambda: _row_in_state(node, result.id, "pending", attempts=1))
    assert row["last_error"].startswith("HTTP 502: <html><head><title>502 Bad Gateway")
    assert len(row["last_error"]) <= len("HTTP 502: ") + 200
    assert row["last_status"] == 502
    assert row["next_attempt_at"] - row["updated_at"] >= 15.0  # at least base/2 away


async def _row_in_state(node, row_id: int, state: str, attempts: int | None = None):
    row = await node.row(row_id)
    if row["state"] == state and (attempts is None or row["attempts"] == attempts):
        return row
    return None


async def test_hang_times_out_and_is_retried(sqlite_url, fake, http_session) -> None:
    fake.script(Reply.never_answers())
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY, timeout_s=0.3)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-hang", call_result("u-hang"))
        await wait_until(lambda: delivered(node, "u-hang"), what="delivery after a hang")
        row = await node.row(result.id)
    assert len(fake.requests_for("u-hang")) == 2
    assert fake.deliveries == {"u-hang": 1}
    assert row["attempts"] == 2


async def test_retry_after_is_honoured(sqlite_url, fake, http_session) -> None:
    fake.script(Reply.rate_limited("1"))
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        await node.outbox.enqueue(TARGET, "u-429", call_result("u-429"))
        await wait_until(lambda: delivered(node, "u-429"), what="delivery after a 429")
    first, second = fake.requests_for("u-429")
    assert first.status == 429 and second.status == 200
    # The backoff alone would retry within 0.2 s; the server asked for 1 s.
    assert second.at - first.at >= 1.0


async def test_success_false_is_a_dead_letter_never_resent(sqlite_url, fake, http_session) -> None:
    fake.script(Reply.success_false("Campaign not found"))
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-false", call_result("u-false"))
        row = await wait_until(lambda: _row_in_state(node, result.id, "dead"))
        # A later row goes through: the dispatcher kept running and did not pick the dead one again.
        await node.outbox.enqueue(TARGET, "u-after", call_result("u-after"))
        await wait_until(lambda: delivered(node, "u-after"))
        stats = await node.outbox.stats()
    assert row["last_error"] == "HTTP 200: Campaign not found"
    assert row["attempts"] == 1
    assert len(fake.requests_for("u-false")) == 1
    assert stats["dead"] == 1 and stats["by_state"]["delivered"] == 1


async def test_bad_request_is_a_dead_letter_with_the_reason(sqlite_url, fake, http_session) -> None:
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        payload = call_result("u-400")
        del payload["campaignId"]
        result = await node.outbox.enqueue(TARGET, "u-400", payload)
        row = await wait_until(lambda: _row_in_state(node, result.id, "dead"))
    assert row["last_error"] == "HTTP 400: Missing required fields: uniqueid, phoneNumber, campaignId"
    assert row["last_status"] == 400


async def test_401_dead_letters_and_marks_the_target_unhealthy_until_a_success(
    sqlite_url, fake, http_session, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "did_" + "ff00" * 16
    sender = did_sender(http_session, fake.base_url, api_key=wrong_key)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-401", call_result("u-401"))
        row = await wait_until(lambda: _row_in_state(node, result.id, "dead"))
        health = node.outbox.health()
        assert health["targets"][TARGET]["unhealthy"] is True
        assert health["targets"][TARGET]["last_error"] == "HTTP 401: Invalid API key"
        # The key is fixed (here: the next reply succeeds) and a later row is delivered.
        sender._api_key = API_KEY
        await node.outbox.enqueue(TARGET, "u-ok", call_result("u-ok"))
        await wait_until(lambda: delivered(node, "u-ok"))
        assert node.outbox.health()["targets"][TARGET]["unhealthy"] is False
    assert row["last_error"] == "HTTP 401: Invalid API key" and row["last_status"] == 401
    assert fake.requests_for("u-401")[0].headers["x-api-key"] == wrong_key
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "outbox row dead-lettered" in logged
    assert wrong_key not in logged and API_KEY not in logged


async def test_connection_refused_is_retried_and_never_shows_the_key(sqlite_url, http_session, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeDIDOptimizer(api_key=API_KEY) as gone:
        dead_url = gone.base_url
    sender = did_sender(http_session, dead_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-refused", call_result("u-refused"))
        row = await wait_until(lambda: _row_in_state(node, result.id, "pending", attempts=1))
        health = node.outbox.health()
    assert "Cannot connect" in row["last_error"] or "refused" in row["last_error"].lower()
    assert API_KEY not in row["last_error"]
    assert health["ok"] is True  # a peer outage is not an outbox failure
    assert health["last_error"] == f"{TARGET}: {row['last_error']}"
    assert API_KEY not in "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


async def test_disabled_target_keeps_rows_pending_then_delivers_when_enabled(sqlite_url, fake, http_session) -> None:
    other = RecordingSender()
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, False), "other": (other, True)}) as node:
        for n in range(3):
            await node.outbox.enqueue(TARGET, f"u-off-{n}", call_result(f"u-off-{n}"))
        await node.outbox.enqueue("other", "barrier", {"n": 1})
        await wait_until(lambda: delivered(node, "barrier"), what="the enabled target's row")
        stats = await node.outbox.stats()
        assert node.outbox.health()["targets"][TARGET]["enabled"] is False
    assert fake.requests == []
    assert stats["targets"][TARGET]["pending"] == 3
    # Next run with the target enabled: every row goes out once.
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        await wait_until(lambda: fake.deliveries.total() == 3, what="the backlog")
        await wait_until(lambda: _all_delivered(node, 4))
    assert fake.deliveries == {"u-off-0": 1, "u-off-1": 1, "u-off-2": 1}


async def _all_delivered(node, count: int) -> bool:
    states = await node.states()
    return len(states) == count and set(states.values()) == {"delivered"}


async def test_delivered_is_never_sent_again(sqlite_url, fake, http_session) -> None:
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        first = await node.outbox.enqueue(TARGET, "u-once", call_result("u-once"))
        await wait_until(lambda: delivered(node, "u-once"))
        again = await node.outbox.enqueue(TARGET, "u-once", call_result("u-once", duration=99))
        assert again == (first.id, False)
        assert await node.outbox.retry(first.id) is False
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        await node.outbox.enqueue(TARGET, "u-barrier", call_result("u-barrier"))
        await wait_until(lambda: delivered(node, "u-barrier"))
    assert fake.received["u-once"] == 1
    assert fake.requests_for("u-once")[0].json["duration"] == 2


async def test_duplicate_key_creates_nothing_and_delivers_once(sqlite_url, fake, http_session) -> None:
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
        a = await node.outbox.enqueue(TARGET, "u-dup", call_result("u-dup"))
        b = await node.outbox.enqueue(TARGET, "u-dup", call_result("u-dup"))
        await wait_until(lambda: delivered(node, "u-dup"))
        await node.outbox.enqueue(TARGET, "u-barrier", call_result("u-barrier"))
        await wait_until(lambda: delivered(node, "u-barrier"))
    assert a.created is True and b == (a.id, False)
    assert fake.received["u-dup"] == 1 and fake.deliveries["u-dup"] == 1


async def test_sender_exception_is_a_retry_with_the_error_text(sqlite_url) -> None:
    sender = RecordingSender(RuntimeError("socket exploded"), Delivery("delivered", status=200))
    async with outbox_node(sqlite_url, senders={"t": (sender, True)}) as node:
        result = await node.outbox.enqueue("t", "k", {"x": 1})
        row = await wait_until(lambda: _row_in_state(node, result.id, "delivered"))
        assert node.outbox.health()["ok"] is True
    assert sender.keys() == ["k", "k"]
    assert [r.attempts for r in sender.rows] == [0, 1]
    assert row["attempts"] == 2


async def test_sender_exception_text_is_kept_as_last_error(sqlite_url) -> None:
    sender = RecordingSender(ValueError("bad payload shape"))
    config = fast_config(backoff_base_s=30.0, backoff_max_s=60.0)
    async with outbox_node(sqlite_url, config=config, senders={"t": (sender, True)}) as node:
        result = await node.outbox.enqueue("t", "k", {"x": 1})
        row = await wait_until(lambda: _row_in_state(node, result.id, "pending", attempts=1))
    assert row["last_error"] == "ValueError: bad payload shape"


async def test_max_attempts_turns_a_row_into_a_dead_letter(sqlite_url, fake, http_session) -> None:
    fake.script(*[Reply.error(500)] * 5)
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    async with outbox_node(sqlite_url, config=fast_config(max_attempts=3), senders={TARGET: (sender, True)}) as node:
        result = await node.outbox.enqueue(TARGET, "u-max", call_result("u-max"))
        row = await wait_until(lambda: _row_in_state(node, result.id, "dead"))
    assert row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts: HTTP 500: Internal server error"
    assert len(fake.requests_for("u-max")) == 3


class _Capture(logging.Handler):
    """Records as the daemon's stderr handler sees them (with the context fields filled in)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_log_context_of_the_enqueue_follows_the_delivery(sqlite_url, fake, http_session) -> None:
    capture = _Capture()
    logger = logging.getLogger("telephonyd.outbox")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    sender = did_sender(http_session, fake.base_url, api_key=API_KEY)
    try:
        async with outbox_node(sqlite_url, senders={TARGET: (sender, True)}) as node:
            with log_context(uniqueid="1795237857.3", linkedid="1795237857.1", agi_script="call_log"):
                result = await node.outbox.enqueue(TARGET, "1795237857.3", call_result("1795237857.3"))
            await wait_until(lambda: delivered(node, "1795237857.3"))
    finally:
        logger.removeHandler(capture)
        logger.setLevel(logging.NOTSET)
    records = [r for r in capture.records if r.getMessage() == "outbox row delivered"]
    assert len(records) == 1
    record = records[0]
    assert (record.uniqueid, record.linkedid, record.agi_script) == ("1795237857.3", "1795237857.1", "call_log")
    assert record.outbox_id == result.id and record.outbox_target == TARGET
