"""One relay node for tests: Store + real Outbox + TopsSender + AmeyoService behind a real aiohttp
listener on port 0, delivering to a `FakeTops`. Several nodes may share one database."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from telephonyd.ameyo import AmeyoService, requestlog
from telephonyd.ameyo.routes import admin_routes, callback_routes
from telephonyd.ameyo.schema import gate, metadata, phone1_state
from telephonyd.config import AmeyoConfig, TopsConfig, TopsTarget
from telephonyd.outbox import Outbox
from telephonyd.store import Store
from telephonyd.upstream.tops import TopsSender
from tests.fakes.tops import FakeTops
from tests.helpers import wait_until
from tests.outbox_harness import fast_config


def tops_config(fake: FakeTops, **overrides: Any) -> TopsConfig:
    values: dict[str, Any] = {"real_send": True, "timeout_s": 1.0,
                              "test": TopsTarget(base_url=fake.base_url, api_key=fake.api_key)}
    return TopsConfig(**{**values, **overrides})


@dataclass
class Node:
    store: Store
    outbox: Outbox
    service: AmeyoService
    sender: TopsSender
    session: aiohttp.ClientSession
    runner: web.AppRunner
    base_url: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def get(self, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.base_url + path, params=params, headers=headers or {}) as resp:
            return resp.status, await resp.json()

    async def requests(self, **filters: Any) -> list[dict[str, Any]]:
        return list(reversed(await requestlog.query(self.store, limit=1000, **filters)))

    async def count(self, table: sa.Table) -> int:
        async with self.store.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())

    async def gates(self) -> dict[str, str]:
        async with self.store.connect() as conn:
            return dict((await conn.execute(sa.select(gate.c.gate_key, gate.c.state))).all())

    async def phone1_states(self) -> int:
        return await self.count(phone1_state)

    async def outbox_rows(self) -> list[dict[str, Any]]:
        return await self.outbox.list_rows(limit=1000)


async def start_node(
    url: str,
    fake: FakeTops,
    *,
    ameyo: AmeyoConfig | None = None,
    tops: TopsConfig | None = None,
    node_id: str = "n1",
    deliver: bool = True,
) -> Node:
    """A running node; ``deliver=False`` leaves the outbox dispatcher stopped (rows stay pending)."""
    store = Store(url, schemas=[Outbox.metadata, metadata])
    await store.start()
    outbox = Outbox(store, node_id=node_id, config=fast_config())
    ameyo = ameyo or AmeyoConfig()
    tops = tops or tops_config(fake)
    service = AmeyoService(ameyo, tops, store, outbox, node_id=node_id)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    sender = TopsSender(tops, session, on_result=service.record_upstream)
    outbox.register_sender("tops", sender, enabled=True)
    app = web.Application()
    app.add_routes(callback_routes(service))
    app.add_routes(admin_routes(service))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    await outbox.start()
    await service.start()
    node = Node(store, outbox, service, sender, session, runner, f"http://127.0.0.1:{port}")
    node.tasks.append(asyncio.create_task(service.run()))
    if deliver:
        node.tasks.append(asyncio.create_task(outbox.run()))
    return node


async def stop_node(node: Node) -> None:
    """An orderly stop: listener, callback writer, outbox, store."""
    await node.runner.cleanup()
    await node.service.stop(5.0)
    await node.outbox.stop(5.0)
    for task in node.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)
    await node.session.close()
    await node.store.close()


async def crash_node(node: Node) -> None:
    """Like a killed process: tasks cancelled mid-flight, nothing flushed on purpose."""
    for task in node.tasks:
        task.cancel()
    for task in node.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await node.runner.cleanup()
    await node.session.close()
    await node.store.close()


async def settled(*nodes: Node, timeout: float = 5.0) -> None:
    """Wait until no outbox row is pending or in flight and every request log row is final."""
    open_outcomes = {"queued", "retry"}

    async def done() -> bool:
        for node in nodes:
            if any(r["state"] in ("pending", "in_flight") for r in await node.outbox_rows()):
                return False
            if any(r["outcome"] in open_outcomes for r in await node.requests()):
                return False
        return True

    await wait_until(done, timeout, "the outbox to settle")
