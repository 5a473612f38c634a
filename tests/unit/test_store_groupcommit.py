"""`store.groupcommit.GroupCommit` against a stand-in ``commit`` function (no database): batching,
durability before the answer, the two failure policies, closing and cancelling."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from telephonyd.errors import StoreError
from telephonyd.store.conflicts import ConflictCounter, StoreConflict, is_lock_conflict
from telephonyd.store.groupcommit import GroupCommit, RetryAlone


class Commits:
    """A ``commit`` that records its batches; ``gate`` (when set) holds each commit until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.committed: list[str] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail: dict[str, BaseException] = {}  # item -> error raised by any batch holding it
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.entered.set()
        try:
            for item in items:
                if item in self.fail:
                    raise self.fail[item]
            if self.gate is not None:
                await self.gate.wait()
            self.committed.extend(items)
            return [f"ok:{item}" for item in items]
        finally:
            self.in_flight -= 1


def locked() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))


async def test_items_queued_during_a_commit_share_the_next_one_and_answer_only_after_it() -> None:
    commits = Commits()
    commits.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(commits, name="t", max_batch=100, timeout_s=5)
    runner = asyncio.create_task(group.run())
    first = group.submit("a")
    await commits.entered.wait()
    later = [group.submit(x) for x in ("b", "c", "d")]
    await asyncio.sleep(0)
    assert not first.done()  # not answered before its COMMIT
    commits.gate.set()
    assert await first == "ok:a"
    assert await asyncio.gather(*later) == ["ok:b", "ok:c", "ok:d"]
    assert commits.batches == [["a"], ["b", "c", "d"]]
    assert (group.batches, group.items, group.largest_batch) == (2, 4, 3)
    group.close()
    await runner


async def test_max_batch_splits_a_backlog_in_submission_order() -> None:
    commits = Commits()
    group: GroupCommit[str, str] = GroupCommit(commits, name="t", max_batch=2, timeout_s=5)
    futures = [group.submit(str(n)) for n in range(5)]
    runner = asyncio.create_task(group.run())
    await asyncio.gather(*futures)
    assert commits.batches == [["0", "1"], ["2", "3"], ["4"]]
    group.close()
    await runner


async def test_fail_each_gives_every_caller_a_store_error_and_marks_health_until_a_commit() -> None:
    commits = Commits()
    commits.fail["bad"] = locked()
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5)
    futures = [group.submit("x"), group.submit("bad")]
    runner = asyncio.create_task(group.run())
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, StoreError) and str(r).startswith("w: write failed: OperationalError")
               for r in results)
    assert results[0] is not results[1]  # each caller its own exception
    assert not group.healthy and group.failed_batches == 1 and "database is locked" in (group.last_error or "")
    assert await group.submit("y") == "ok:y"
    assert group.healthy and commits.committed == ["y"]
    group.close()
    await runner


async def test_fail_each_passes_a_conflict_on_and_stays_healthy() -> None:
    commits = Commits()
    commits.fail["c"] = StoreConflict("lost", op="enqueue", attempts=4)
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5)
    runner = asyncio.create_task(group.run())
    with pytest.raises(StoreConflict) as caught:
        await group.submit("c")
    assert caught.value.op == "enqueue" and caught.value.attempts == 4
    assert group.healthy and group.failed_batches == 1
    group.close()
    await runner


async def test_fail_each_hands_a_bug_to_its_callers_and_goes_on() -> None:
    commits = Commits()
    commits.fail["bug"] = ValueError("bug")
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5)
    runner = asyncio.create_task(group.run())
    with pytest.raises(ValueError, match="bug"):
        await group.submit("bug")
    assert group.healthy and group.failed_batches == 0
    assert await group.submit("z") == "ok:z"
    group.close()
    await runner


async def test_retry_alone_isolates_the_bad_item() -> None:
    commits = Commits()
    commits.fail["bad"] = sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5,
                                               failure=RetryAlone(0.001, 0.002))
    futures = [group.submit(x) for x in ("a", "bad", "b")]
    runner = asyncio.create_task(group.run())
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == "ok:a" and results[2] == "ok:b"
    assert isinstance(results[1], StoreError) and "UNIQUE" in str(results[1])
    assert commits.batches == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]
    assert group.failed_items == 1 and group.batches == 0 and group.items == 2
    group.close()
    await runner


async def test_retry_alone_tries_a_lock_conflict_again_and_counts_it() -> None:
    commits = Commits()
    deadlock = sa.exc.OperationalError("UPDATE", {}, Exception(1213, "Deadlock found when trying to get lock"))
    attempts = {"n": 0}

    async def commit(items: Sequence[str]) -> list[str]:
        attempts["n"] += 1
        if attempts["n"] <= 2:
            raise deadlock
        return await commits(items)

    conflicts = ConflictCounter()
    group: GroupCommit[str, str] = GroupCommit(commit, name="w", max_batch=10, timeout_s=5,
                                               failure=RetryAlone(0.001, 0.002, conflicts=conflicts, op="ameyo"))
    runner = asyncio.create_task(group.run())
    assert await group.submit("a") == "ok:a"
    assert attempts["n"] == 3
    assert conflicts.snapshot() == {"by_op": {"ameyo": 2}, "exhausted": {}}
    group.close()
    await runner


async def test_retry_alone_fails_every_caller_of_a_batch_that_timed_out() -> None:
    commits = Commits()
    commits.gate = asyncio.Event()  # never released
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=0.05,
                                               failure=RetryAlone(0.001, 0.002))
    futures = [group.submit(x) for x in ("a", "b")]
    runner = asyncio.create_task(group.run())
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [str(r) for r in results] == ["store write timed out after 0.05s"] * 2
    assert commits.batches == [["a", "b"]] and group.failed_items == 2
    group.close()
    await runner


async def test_a_caller_that_stopped_waiting_is_left_out() -> None:
    commits = Commits()
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5)
    gone = group.submit("gone")
    kept = group.submit("kept")
    gone.cancel()
    runner = asyncio.create_task(group.run())
    assert await kept == "ok:kept"
    assert commits.batches == [["kept"]]
    group.close()
    await runner


async def test_depth_two_hands_over_the_next_batch_while_one_is_under_way() -> None:
    commits = Commits()
    commits.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5, depth=2)
    runner = asyncio.create_task(group.run())
    first = group.submit("a")
    await commits.entered.wait()
    second = group.submit("b")
    while len(commits.batches) < 2:
        await asyncio.sleep(0)
    third = group.submit("c")
    for _ in range(5):
        await asyncio.sleep(0)
    assert commits.most_in_flight == 2 and len(commits.batches) == 2  # the third waits for a free slot
    commits.gate.set()
    assert await asyncio.gather(first, second, third) == ["ok:a", "ok:b", "ok:c"]
    assert commits.batches == [["a"], ["b"], ["c"]]
    group.close()
    await runner


async def test_close_commits_what_was_queued_and_later_items_go_alone() -> None:
    commits = Commits()
    hook = []
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5,
                                               after_commit=lambda: hook.append(1))
    queued = [group.submit(x) for x in ("a", "b")]
    group.close()
    await group.run()  # returns once the queue is committed
    assert await asyncio.gather(*queued) == ["ok:a", "ok:b"]
    assert await group.submit("late") == "ok:late"
    assert commits.batches == [["a", "b"], ["late"]] and len(hook) == 2


async def test_stop_and_cancel_fail_the_waiting_callers() -> None:
    commits = Commits()
    commits.gate = asyncio.Event()
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=1, timeout_s=5)
    group.start()
    assert group.running
    under_way = group.submit("a")
    queued = group.submit("b")
    await commits.entered.wait()
    await group.stop(0.01)
    with pytest.raises(StoreError, match="w stopped before the commit"):
        await under_way
    with pytest.raises(StoreError, match="w stopped before writing"):
        await queued
    assert not group.running


def test_lock_conflicts_are_mariadb_conflicts_and_sqlite_busy_only() -> None:
    assert is_lock_conflict(locked())
    assert is_lock_conflict(sa.exc.OperationalError("x", {}, Exception(1205, "Lock wait timeout exceeded")))
    assert not is_lock_conflict(sa.exc.OperationalError("x", {}, Exception(2013, "Lost connection")))
    assert not is_lock_conflict(sa.exc.IntegrityError("x", {}, Exception("UNIQUE constraint failed")))


async def test_cancelling_the_writer_while_it_retries_alone_fails_every_caller_left() -> None:
    commits = Commits()
    commits.fail["bad"] = sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    group: GroupCommit[str, str] = GroupCommit(commits, name="w", max_batch=10, timeout_s=5,
                                               failure=RetryAlone(0.001, 0.002))
    commits.gate = asyncio.Event()  # holds every transaction that does not fail at once
    futures = [group.submit(x) for x in ("bad", "a", "b")]
    runner = asyncio.create_task(group.run())
    while len(commits.batches) < 3:  # the batch failed, "bad" failed alone, "a" is under way alone
        await asyncio.sleep(0)
    runner.cancel()
    # (bounded so that a caller left waiting fails the test instead of hanging it)
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
    assert isinstance(results[0], StoreError)
    assert [str(r) for r in results[1:]] == ["w stopped before the commit"] * 2
