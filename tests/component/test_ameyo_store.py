"""The dedupe gate's TTL per state, the group-commit writer, and pruning, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from telephonyd.ameyo.batch import GroupCommitter, Transaction
from telephonyd.ameyo.gate import Gate, GateTTLs
from telephonyd.ameyo.schema import (
    FAILED,
    PROCESSED,
    PROCESSING,
    WAITING_PHONE2,
    gate,
    metadata,
    request_log,
)
from telephonyd.errors import StoreError
from telephonyd.store import Store

TTLS = GateTTLs(processing_s=0.3, processed_s=0.6, waiting_phone2_s=0.3)


@pytest.fixture
async def store(store_url):
    store = Store(store_url, schemas=[metadata])
    await store.start()
    yield store
    await store.close()


async def claim(store: Store, key: str, state: str = PROCESSING, phone2: bool = False) -> tuple[bool, str | None]:
    result = await store.write(lambda conn: Gate(store).claim(
        conn, key, state=state, request_id=f"r{time.monotonic_ns()}"[:32], flow="test", phone2=phone2, ttls=TTLS))
    return result.claimed, result.state


async def passes_after(store: Store, key: str, *, at_least_s: float, phone2: bool = False) -> float:
    """Seconds until a claim on ``key`` passes (polled), checking it was blocked before ``at_least_s``."""
    started = time.monotonic()
    while True:
        claimed, _ = await claim(store, key, phone2=phone2)
        waited = time.monotonic() - started
        if claimed:
            assert waited >= at_least_s * 0.8, f"passed after {waited:.2f}s, expected >= {at_least_s}s"
            return waited
        assert waited < at_least_s + 5, "never passed"
        await asyncio.sleep(0.05)


async def test_processing_blocks_for_its_ttl(store):
    assert await claim(store, "k") == (True, None)
    assert await claim(store, "k") == (False, PROCESSING)
    await passes_after(store, "k", at_least_s=TTLS.processing_s - 0.1)


async def test_processed_blocks_longer(store):
    assert (await claim(store, "k", state=PROCESSED))[0]
    assert await claim(store, "k") == (False, PROCESSED)
    await passes_after(store, "k", at_least_s=TTLS.processed_s - 0.1)


async def test_waiting_phone2_lets_phone2_through_only(store):
    assert (await claim(store, "k", state=WAITING_PHONE2))[0]
    assert await claim(store, "k") == (False, WAITING_PHONE2)  # a repeat of phone 1
    assert await claim(store, "k", phone2=True) == (True, None)
    assert await claim(store, "k", phone2=True) == (False, PROCESSING)  # a repeat of phone 2


async def test_failed_blocks_nothing(store):
    assert (await claim(store, "k", state=FAILED))[0]
    assert await claim(store, "k") == (True, None)


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "read-back"])
async def test_bulk_insert_gives_each_new_key_to_its_first_claimer(store, returning, monkeypatch):
    g = Gate(store)
    assert (await claim(store, "old"))[0]
    claims = [{"key": k, "new_state": PROCESSING, "request_id": r, "flow": "f"}
              for k, r in [("a", "r1"), ("b", "r2"), ("a", "r3"), ("old", "r4")]]

    def insert_many(conn: sa.Connection) -> set[str]:
        monkeypatch.setattr(conn.dialect, "insert_executemany_returning", returning)
        return g.insert_many(conn, claims)

    assert await store.write(insert_many) == {"r1", "r2"}
    assert await claim(store, "a") == (False, PROCESSING)


async def test_group_commit_shares_transactions_and_isolates_a_failing_unit(store):
    committer = GroupCommitter(store, max_batch=64)
    runner = asyncio.create_task(committer.run())

    def insert(key: str):
        def work(tx: Transaction) -> str:
            tx.conn.execute(sa.insert(gate).values(gate_key=key, state="x", updated_at=0.0, request_id="r", flow="f"))
            return key
        return work

    futures = [committer.submit(insert(f"k{i}")) for i in range(20)]
    futures.append(committer.submit(insert("k3")))  # violates the primary key
    results = await asyncio.gather(*futures, return_exceptions=True)
    committer.close()
    await runner
    assert results[:20] == [f"k{i}" for i in range(20)]
    assert isinstance(results[20], StoreError)
    async with store.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(gate))).scalar_one() == 20
    assert committer.batches < 20  # units shared transactions


async def test_pipelined_batches_commit_in_submission_order(sqlite_url, monkeypatch):
    store = Store(sqlite_url, schemas=[metadata])
    await store.start()
    handed, most = [0], [0]
    real_write = store.write

    async def counted_write(work, **options):
        handed[0] += 1
        most[0] = max(most[0], handed[0])
        try:
            return await real_write(work, **options)
        finally:
            handed[0] -= 1

    monkeypatch.setattr(store, "write", counted_write)
    committer = GroupCommitter(store, max_batch=4)
    runner = asyncio.create_task(committer.run())
    try:
        def insert_and_count(n: int):
            def work(tx: Transaction) -> int:
                tx.conn.execute(sa.insert(gate).values(gate_key=f"k{n}", state="x", updated_at=0.0, request_id="r",
                                                       flow="f"))
                return tx.conn.execute(sa.select(sa.func.count()).select_from(gate)).scalar_one()
            return work

        futures = []
        for n in range(60):
            futures.append(committer.submit(insert_and_count(n)))
            if n % 7 == 0:
                await asyncio.sleep(0)  # let batches of different sizes form
        # Each unit saw exactly the rows of the units submitted before it, across batches.
        assert await asyncio.gather(*futures) == list(range(1, 61))
        assert committer.batches >= 15
        assert most[0] == 2  # the next batch was handed over while one was being written
    finally:
        committer.close()
        await runner
        await store.close()


async def test_prune(store):
    from telephonyd.ameyo.requestlog import RequestLog

    log, g = RequestLog(store), Gate(store)

    def old_rows(conn: sa.Connection) -> None:
        tx = Transaction(conn)
        log.insert(tx, request_id="old", channel="general", http_status=400, outcome="rejected")
        tx.flush()
        conn.execute(sa.insert(gate).values(gate_key="old", state=PROCESSED, updated_at=0.0, request_id="r", flow="f"))

    def prune(conn: sa.Connection) -> tuple[int, int]:
        conn.execute(sa.update(request_log).values(created_at=0.0))
        return log.prune(conn, retention_s=3600), g.prune(conn, older_than_s=3600)

    await store.write(old_rows)
    assert (await claim(store, "new"))[0]
    assert await store.write(prune) == (1, 1)
    async with store.connect() as conn:
        assert (await conn.execute(sa.select(gate.c.gate_key))).scalars().all() == ["new"]
