"""Write conflicts (deadlock 1213, Galera certification failures) are restarted with jittered
backoff, counted per operation and exported, and never reported as the store being down."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.metrics.collector import MetricSources
from telephonyd.outbox.queries import OutboxQueries
from telephonyd.store import Store
from telephonyd.store.conflicts import ConflictCounter, StoreConflict, is_conflict
from tests.unit.test_metrics import outbox_section, render, value


def _error(code: int, text: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("COMMIT", {}, Exception(code, text))


@pytest.mark.parametrize(("code", "text", "conflict"), [
    (1213, "Deadlock found when trying to get lock; try restarting transaction", True),
    (1213, "WSREP detected deadlock/conflict and aborted the transaction. Try restarting the transaction", True),
    (1205, "Lock wait timeout exceeded; try restarting transaction", True),
    (1047, "WSREP detected deadlock/conflict and aborted the transaction. Try restarting the transaction", True),
    (1180, "Got error 149 \"Lock deadlock; Try restarting transaction\" during COMMIT (WSREP)", True),
    (1047, "WSREP has not yet prepared node for application use", False),
    (1180, "Got error 28 \"No space left on device\" during COMMIT", False),
    (2013, "Lost connection to MySQL server during query", False),
    (1062, "Duplicate entry", False),
])
def test_which_errors_are_conflicts(code: int, text: str, conflict: bool) -> None:
    assert is_conflict(_error(code, text)) is conflict


def test_counter_counts_restarts_and_exhaustions_per_op() -> None:
    counter = ConflictCounter()
    counter.record("claim")
    counter.record("claim", exhausted=True)
    counter.record("result")
    assert counter.snapshot() == {"by_op": {"claim": 2, "result": 1}, "exhausted": {"claim": 1}}


def _queries(failures: list[BaseException], sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> OutboxQueries:
    store = Store("sqlite+aiosqlite://")
    queries = OutboxQueries(store, "node-a")

    async def write(work: Any, *, urgent: bool = False) -> str:
        if failures:
            raise failures.pop(0)
        return "committed"

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr(store, "write", write)
    monkeypatch.setattr("telephonyd.outbox.queries.asyncio.sleep", sleep)
    return queries


async def test_a_conflicting_transaction_is_restarted_after_a_jittered_pause_and_counted(monkeypatch) -> None:
    sleeps: list[float] = []
    queries = _queries([_error(1213, "WSREP detected deadlock/conflict"), _error(1213, "Deadlock found")], sleeps,
                       monkeypatch)
    assert await queries._transaction(lambda conn: None, op="claim") == "committed"
    assert queries.store.conflicts.snapshot() == {"by_op": {"claim": 2}, "exhausted": {}}
    assert len(sleeps) == 2 and all(0.005 <= s <= 0.04 for s in sleeps)  # full jitter: base 10 ms, doubling


async def test_exhausted_conflicts_raise_store_conflict_not_a_plain_store_error(monkeypatch) -> None:
    sleeps: list[float] = []
    queries = _queries([_error(1213, "Deadlock found")] * 4, sleeps, monkeypatch)
    with pytest.raises(StoreConflict) as caught:
        await queries._transaction(lambda conn: None, op="result")
    assert caught.value.op == "result" and caught.value.attempts == 4 and caught.value.retryable
    assert queries.store.conflicts.snapshot() == {"by_op": {"result": 4}, "exhausted": {"result": 1}}
    assert len(sleeps) == 3


async def test_other_errors_are_not_restarted(monkeypatch) -> None:
    sleeps: list[float] = []
    queries = _queries([_error(2013, "Lost connection")], sleeps, monkeypatch)
    with pytest.raises(sa.exc.OperationalError):
        await queries._transaction(lambda conn: None, op="claim")
    assert queries.store.conflicts.snapshot()["by_op"] == {} and sleeps == []


async def test_conflicts_are_exported_per_op() -> None:
    conflicts = ConflictCounter()
    for op, exhausted in [("claim", False)] * 6 + [("claim", True), ("result", False), ("result", False)]:
        conflicts.record(op, exhausted=exhausted)

    async def stats() -> dict:
        return {}

    s = await render(MetricSources(), outbox_section(stats, conflicts))
    assert value(s, "telephonyd_store_conflicts_total", op="claim") == 7
    assert value(s, "telephonyd_store_conflicts_total", op="result") == 2
    assert value(s, "telephonyd_store_conflicts_total", op="enqueue") == 0
    assert value(s, "telephonyd_store_conflicts_exhausted_total", op="claim") == 1


async def test_a_batch_lost_to_conflicts_fails_its_callers_but_leaves_the_writer_healthy() -> None:
    from telephonyd.outbox.writer import GroupWriter

    calls = 0

    async def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreConflict("outbox enqueue: write conflict 4 times in a row", op="enqueue", attempts=4)
        return [f"ok:{item}" for item in items]

    writer = GroupWriter(write, batch_max=8, timeout_s=5.0, name="test-writer")
    writer.start()
    try:
        with pytest.raises(StoreConflict) as caught:
            await writer.submit("a")
        assert caught.value.op == "enqueue"
        assert writer.healthy  # a conflict is not an outage: health does not turn degraded
        assert await writer.submit("b") == "ok:b"
    finally:
        await writer.close(1.0)
