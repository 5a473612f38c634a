"""Helpers for outbox tests: a running Outbox over a Store, waiting on conditions, crashing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from telephonyd.config import DIDOptimizerConfig, OutboxConfig
from telephonyd.outbox import Delivery, Outbox, OutboxRow, metadata
from telephonyd.store import Store
from telephonyd.upstream import DID_OPTIMIZER_TARGET, DIDOptimizerSender

#: Fast schedule for tests: every wait is a fraction of a second.
FAST = {
    "poll_interval_s": 0.05,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
    "lease_s": 5.0,
    "store_timeout_s": 5.0,
}


def fast_config(**overrides: Any) -> OutboxConfig:
    return OutboxConfig(**{**FAST, **overrides})




class RecordingSender:
    """A local sender: records rows, answers with scripted deliveries (default delivered)."""

    def __init__(self, *replies: Delivery | BaseException) -> None:
        self.rows: list[OutboxRow] = []
        self.replies = list(replies)
        self.release = asyncio.Event()
        self.block = False

    async def send(self, row: OutboxRow) -> Delivery:
        self.rows.append(row)
        if self.block:
            await self.release.wait()
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, BaseException):
                raise reply
            return reply
        return Delivery("delivered", status=200)

    def keys(self) -> list[str]:
        return [r.key for r in self.rows]


class Node:
    """One Outbox instance with its own Store; ``run()`` starts the dispatcher task."""

    def __init__(self, store: Store, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox
        self.task: asyncio.Task[None] | None = None

    def run(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.outbox.run())

    async def stop(self, timeout: float = 5.0) -> None:
        await self.outbox.stop(timeout)
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout)
        await self.store.close()

    async def crash(self) -> None:
        """Die without finishing anything: cancel the loop and its sends, drop the connections."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        writer_task = self.outbox._writer.task
        if writer_task is not None:
            writer_task.cancel()
            await asyncio.gather(writer_task, return_exceptions=True)
        await self.store.close()

    async def row(self, row_id: int) -> dict[str, Any]:
        rows = await self.outbox.list_rows(limit=10_000)
        return next(r for r in rows if r["id"] == row_id)

    async def states(self) -> dict[str, str]:
        return {r["key"]: r["state"] for r in await self.outbox.list_rows(limit=10_000)}


@asynccontextmanager
async def outbox_node(
    url: str,
    *,
    node_id: str = "n1",
    config: OutboxConfig | None = None,
    senders: dict[str, tuple[Any, bool]] | None = None,
    run: bool = True,
) -> AsyncIterator[Node]:
    store = Store(url, schemas=[metadata])
    await store.start()
    outbox = Outbox(store, node_id=node_id, config=config or fast_config(), rng=random.Random(1))
    for target, (sender, enabled) in (senders or {}).items():
        outbox.register_sender(target, sender, enabled=enabled)
    await outbox.start()
    node = Node(store, outbox)
    if run:
        node.run()
    try:
        yield node
    finally:
        if store._engine is not None:
            await node.stop()


def did_sender(session: aiohttp.ClientSession, base_url: str, *, api_key: str | None = None,
               timeout_s: float = 5.0) -> DIDOptimizerSender:
    config = DIDOptimizerConfig(enabled=True, base_url=base_url, api_key=api_key, timeout_s=timeout_s)
    return DIDOptimizerSender(config, session)


def call_result(uniqueid: str, **extra: Any) -> dict[str, Any]:
    """A DID Optimizer payload as the call_log handler builds it."""
    return {
        "uniqueid": uniqueid, "linkedid": uniqueid, "phoneNumber": "15551230001",
        "customerPhone": "915555550001", "campaignId": "TESTCAMP", "dialStatus": "ANSWER",
        "disposition": "ANSWER", "duration": 2, "hangupCause": 16, "timestamp": 1795300000,
        "source": "telephonyd", **extra,
    }


TARGET = DID_OPTIMIZER_TARGET
