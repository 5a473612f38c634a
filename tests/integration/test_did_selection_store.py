"""The ``did_selection`` table on SQLite and MariaDB: the last ask of a uniqueid wins, a lookup reads
it back, old rows are pruned, and a store that is down only delays the writes."""

from __future__ import annotations

import asyncio
import dataclasses

from telephonyd.didselect.model import Selection
from telephonyd.didselect.recorder import SelectionRecorder
from telephonyd.didselect.schema import metadata
from telephonyd.store import Store
from tests.helpers import wait_until

NOW = 1_795_000_000.0


def selection(uniqueid: str, did: str | None = "14155550100", created_at: float = NOW, **kw: object) -> Selection:
    fields: dict[str, object] = dict(
        uniqueid=uniqueid, request_id=uniqueid, result="SELECTED" if did else "FAILED",
        status="SUCCESS" if did else "FAILURE", did=did, fallback=False, reason=None if did else "timeout",
        detail="" if did else "no reply within 0.300s", latency_ms=21.5, campaign="C1", area_code="415",
        created_at=created_at, node_id="n1",
    )  # fmt: skip
    fields.update(kw)
    return Selection(**fields)  # type: ignore[arg-type]


async def test_recorder_round_trip(store_url: str) -> None:
    store = Store(store_url, schemas=[metadata])
    await store.start()
    stopping = asyncio.Event()
    recorder = SelectionRecorder(store, timeout_s=5, retention_s=3600, clock=lambda: NOW)
    task = asyncio.create_task(recorder.run(stopping))
    try:
        recorder.add(selection("1795.1", did=None))
        recorder.add(selection("1795.1"))  # asked again: the last one wins
        recorder.add(selection("1795.2", fallback=True, result="FALLBACK", status="FAILURE"))
        recorder.add(selection("1790.9", created_at=NOW - 7200))  # older than the retention
        assert await recorder.flushed(10)
        got = await recorder.lookup("1795.1")
        assert got == selection("1795.1")
        assert dataclasses.replace(await recorder.lookup("1795.2"), detail="") == selection(  # type: ignore[arg-type]
            "1795.2", fallback=True, result="FALLBACK", status="FAILURE")
        assert await recorder.lookup("nope") is None
        await recorder._prune()  # noqa: SLF001 - the periodic pass, run now
        assert await recorder.lookup("1790.9") is None
        assert await recorder.lookup("1795.1") is not None
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await store.close()


async def test_writes_wait_for_a_store_that_is_down(sqlite_url: str) -> None:
    store = Store(sqlite_url, schemas=[metadata])
    recorder = SelectionRecorder(store, timeout_s=1, retention_s=3600, clock=lambda: NOW)
    stopping = asyncio.Event()
    task = asyncio.create_task(recorder.run(stopping))  # the store is not started yet: writes fail
    try:
        recorder.add(selection("1795.3"))
        await wait_until(lambda: recorder.last_error is not None, what="a failed write")
        assert recorder.pending == 1
        await store.start()
        await wait_until(lambda: recorder.written == 1, timeout=40, what="the write after the store came back")
        assert (await recorder.lookup("1795.3")) == selection("1795.3")
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
        await store.close()
