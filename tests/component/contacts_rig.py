"""FakeAMIServer -> real AMIClient -> ContactsSync -> ps_contacts in a real Store, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from telephonyd.ami import AMIClient
from telephonyd.config import AMIConfig, PSContactsConfig
from telephonyd.contacts import ContactChange, ContactsSync
from telephonyd.contacts.schema import metadata
from telephonyd.store import Store
from tests.fakes.ami import FakeAMIServer
from tests.helpers import wait_until

SECRET = "rig-secret"


until = functools.partial(wait_until, timeout=5.0, interval=0.005)


@dataclass
class ContactsRig:
    fake: FakeAMIServer
    store: Store
    client: AMIClient
    sync: ContactsSync
    changes: list[ContactChange] = field(default_factory=list)

    async def rows(self, *, reg_server: str | None = None) -> dict[str, dict[str, Any]]:
        """Every row as the database has it (``SELECT *``: whatever columns the table has)."""
        sql, params = "SELECT * FROM ps_contacts", {}
        if reg_server is not None:
            sql, params = sql + " WHERE reg_server = :rs", {"rs": reg_server}
        async with self.store.connect() as conn:
            return {r.id: dict(r._mapping) for r in await conn.execute(sa.text(sql), params)}

    async def wait_rows(self, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 5.0) -> dict:  # type: ignore[type-arg]
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.rows()
            if predicate(rows):
                return rows
            assert time.monotonic() < deadline, f"ps_contacts never matched; last rows: {rows}"
            await asyncio.sleep(0.01)

    async def settled(self, events: int, timeout: float = 5.0) -> None:
        """At least ``events`` ContactStatus/PeerStatus events applied, and nothing left to write."""
        await until(lambda: self.sync.counters["events"] >= events and self.sync.health()["queued_events"] == 0
                    and self.sync.health()["pending_writes"] == 0, timeout=timeout, what="contacts sync idle")

    async def synced(self, resyncs: int = 1, timeout: float = 5.0) -> None:
        await until(lambda: self.sync.counters["resyncs"] >= resyncs and self.client.connected, timeout=timeout, what="resync")


@contextlib.asynccontextmanager
async def contacts_rig(
    store_url: str,
    *,
    fake: FakeAMIServer | None = None,
    setup: Callable[[FakeAMIServer], None] | None = None,
    store: Store | None = None,
    node_id: str = "ast1",
    ami: dict[str, Any] | None = None,
    **ps: Any,
) -> AsyncIterator[ContactsRig]:
    own_fake = fake is None
    if fake is None:
        fake = FakeAMIServer(secret=SECRET, bad_login_delay_s=0.05)
        await fake.start()
    if setup is not None:
        setup(fake)
    own_store = store is None
    if store is None:
        store = Store(store_url, schemas=[metadata])
        await store.start()
    client = AMIClient(AMIConfig(**{"enabled": True, "port": fake.port, "secret": fake.secret,
                                    "backoff_base_s": 0.02, "backoff_max_s": 0.1, "action_timeout_s": 2.0,
                                    **(ami or {})}))
    sync = ContactsSync(store, client, PSContactsConfig(**{"coalesce_s": 0.01, **ps}), node_id=node_id)
    rig = ContactsRig(fake, store, client, sync)
    sync.subscribe(rig.changes.append)
    tasks: list[asyncio.Task[None]] = []
    try:
        await client.start()
        await sync.start()
        tasks = [asyncio.create_task(sync.run()), asyncio.create_task(client.run())]
        yield rig
    finally:
        await sync.stop(2.0)
        await client.stop(2.0)
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if own_store:
            await store.close()
        if own_fake:
            await fake.stop()
