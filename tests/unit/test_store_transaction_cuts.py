"""`TransactionCuts`: the failover's switch ends the guarded blocks under way, and only those."""

from __future__ import annotations

import asyncio

import pytest

from telephonyd.errors import StoreError
from telephonyd.store.failover import TransactionCuts


async def test_a_cut_ends_every_block_under_way_with_a_retryable_store_error() -> None:
    cuts = TransactionCuts()
    never = asyncio.Event()

    async def guarded() -> None:
        async with cuts.guard():
            await never.wait()

    blocks = [asyncio.create_task(guarded()) for _ in range(3)]
    while len(cuts._scopes) < 3:  # noqa: SLF001 - until all three are inside
        await asyncio.sleep(0)
    assert cuts.cut_all() == 3
    for outcome in await asyncio.gather(*blocks, return_exceptions=True):
        assert isinstance(outcome, StoreError) and outcome.retryable and "transaction cut" in str(outcome)
    assert cuts.cut_all() == 0  # nothing left to cut; a later block runs undisturbed
    async with cuts.guard():
        await asyncio.sleep(0)


async def test_the_blocks_own_timeout_stays_a_timeout_and_a_finished_block_is_not_cut() -> None:
    cuts = TransactionCuts()
    with pytest.raises(TimeoutError):
        async with cuts.guard():
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
    async with cuts.guard():
        pass
    assert cuts.cut_all() == 0
