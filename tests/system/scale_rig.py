"""Helpers for running several daemons (processes) on one MariaDB: per-node upstream fakes that can
be slowed down or made to hang, FastAGI sessions and Ameyo callbacks aimed at chosen instances, and
a read-only view of the shared outbox table."""

from __future__ import annotations

import asyncio
import functools
import glob
import json
import shutil
from collections import Counter
from collections.abc import Iterable
from typing import Any, Self, TypeVar

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from telephonyd.outbox import metadata as outbox_metadata
from telephonyd.outbox.schema import outbox as outbox_table
from telephonyd.store import Store
from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.fakes.tops import FakeTops
from tests.fakes.tops import Reply as TopsReply
from tests.helpers import wait_until

T = TypeVar("T")

TOPS_KEY = "t" * 32


class UpstreamDID(FakeDIDOptimizer):
    """A DID Optimizer that answers valid requests after ``delay_s`` (so claims are held a while),
    or, once `hang` was called, never answers them: a hung request is never confirmed."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.hanging = False

    def hang(self) -> None:
        self.hanging = True

    def _default_reply(self, request: web.Request, data: Any) -> Reply:
        reply = super()._default_reply(request, data)
        if reply.status != 200 or reply.body is not None:
            return reply
        return Reply.never_answers() if self.hanging else Reply(delay_s=self.delay_s)

    def hung(self) -> set[str]:
        """uniqueids of the requests left without an answer."""
        return {str(r.json.get("uniqueid")) for r in self.requests if r.status is None and isinstance(r.json, dict)}


class UpstreamTops(FakeTops):
    """A TopS.II that answers after ``delay_s``; after `hang`, every later request hangs."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(api_key=TOPS_KEY)
        self.default = TopsReply.success(delay_s=delay_s)
        self._hung_from: int | None = None

    def hang(self) -> None:
        self._hung_from = len(self.received)
        self.default = TopsReply.hang()

    def hung(self) -> set[int]:
        """callIds of the requests left without an answer."""
        return set() if self._hung_from is None else {r.fields["callId"] for r in self.received[self._hung_from:]}


def node_config(name: str, url: str, did: FakeDIDOptimizer, tops: FakeTops, **sections: Any) -> dict[str, Any]:
    """A daemon config for instance ``name`` on the shared database ``url``, sending to its own fakes."""
    config: dict[str, Any] = {
        "node_id": name,
        "store": {"url": url, "pool_size": 4},
        "did_optimizer": {"enabled": True, "base_url": did.base_url, "timeout_s": 30.0},
        "tops": {"real_send": True, "timeout_s": 30.0, "test": {"base_url": tops.base_url, "api_key": tops.api_key}},
        "outbox": {"lease_s": 4.0, "poll_interval_s": 0.1, "backoff_base_s": 0.1, "backoff_max_s": 0.5},
        "ameyo": {"sweep_interval_s": 0.2},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return config


async def start_all(daemons: Iterable[Any], timeout: float = 40.0) -> None:
    """Start the daemons at once (each waits for its READY=1)."""
    await asyncio.gather(*(asyncio.to_thread(d.start, timeout) for d in daemons))


until = functools.partial(wait_until, timeout=20.0, interval=0.02)


async def play_on(plan: list[tuple[int, FakeChannel]], concurrency: int = 12) -> list[str | None]:
    """Run each hangup session against its FastAGI port; TELEPHONYD_RESULT per entry (None: refused)."""
    results: list[str | None] = [None] * len(plan)
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, port: int, chan: FakeChannel) -> None:
        async with gate:
            try:
                results[index] = (await run_session("127.0.0.1", port, chan, timeout=10)).result
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                results[index] = None  # the instance is gone: Asterisk's AGISTATUS would be FAILURE

    await asyncio.gather(*(one(i, port, chan) for i, (port, chan) in enumerate(plan)))
    return results


async def callback(http: aiohttp.ClientSession, daemon: Any, params: dict[str, str]) -> int:
    """One Ameyo call-end callback to ``daemon``; the HTTP status (0 when the instance is gone)."""
    try:
        async with http.get(daemon.base_url + "/index.php", params=params) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def one_phone(call_id: int, status: str = "NO_ANSWER") -> dict[str, str]:
    return {"unique_id": str(call_id), "customerId": "300", "crtObjectId": f"crt-{call_id}", "userId": "agent7",
            "systemDisposition": status, "phone1": "09011112222", "callTime": "2026-03-06 13:50:00"}


def two_phones(call_id: int, index: int, status: str) -> dict[str, str]:
    return {"unique_id": str(call_id), "customerId": "300", "crtObjectId": f"crt-{call_id}", "userId": "agent7",
            "systemDisposition": status, "phoneList": '{"phoneList":["09011112222","08033334444"]}',
            "shareablePhonesDialIndex": str(index), "callTime": "2026-03-06 13:50:00"}


def accepted(fakes: Iterable[FakeTops]) -> Counter[int]:
    """TopS.II requests answered success, per callId, over every fake."""
    total: Counter[int] = Counter()
    for fake in fakes:
        total.update(fake.accepted_by_call)
    return total


class OutboxView:
    """Reads the shared outbox table (and the database clock) from the test."""

    def __init__(self, url: str) -> None:
        self.store = Store(url, schemas=[outbox_metadata], pool_size=2)

    async def __aenter__(self) -> Self:
        await self.store.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    async def now(self) -> float:
        return await self.store.now()

    async def rows(self, **where: Any) -> list[dict[str, Any]]:
        stmt = sa.select(outbox_table).order_by(outbox_table.c.id)
        for column, value in where.items():
            stmt = stmt.where(outbox_table.c[column] == value)
        async with self.store.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]


def upstream_ref(row: dict[str, Any]) -> str | int:
    """What the upstream fakes see of a row: the uniqueid (DID Optimizer) or the callId (TopS.II)."""
    if row["target"] == "tops":
        body = json.loads(row["payload"])["body"]
        return next(iter(body.values()))["callId"]
    return row["key"]


def faketime_env(offset: str) -> dict[str, str] | None:
    """Environment that runs a process with its wall clock moved by ``offset`` (libfaketime, e.g.
    ``+10m``); the monotonic clock is left alone. None when libfaketime is not installed."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not libs or shutil.which("faketime") is None:
        return None
    return {"LD_PRELOAD": libs[0], "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
