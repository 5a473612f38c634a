"""``store.durability``: the SQLite ``synchronous`` setting really in effect on every connection the
store writes and reads through (the writer thread's and the async engine's), for each choice."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from telephonyd.config import Config
from telephonyd.config.backbone import StoreConfig
from telephonyd.outbox import metadata
from telephonyd.store import Store

#: SQLite's numbers for ``PRAGMA synchronous`` (sqlite.org/pragma.html#pragma_synchronous).
SYNCHRONOUS = {"full": 2, "normal": 1}


def _pragmas(conn) -> tuple[int, str]:
    sync = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
    journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    return int(sync), str(journal).lower()


@pytest.mark.parametrize("durability", ["full", "normal"])
async def test_sqlite_synchronous_follows_durability(tmp_path: Path, durability: str) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/d.db", schemas=[metadata], durability=durability)
    await store.start()
    try:
        # The writer thread's connection: where every acknowledged outcome is committed.
        assert await store.write(_pragmas) == (SYNCHRONOUS[durability], "wal")
        # The async engine's connections (reads, and writes outside `Store.write`).
        async with store.connect() as conn:
            assert await conn.run_sync(_pragmas) == (SYNCHRONOUS[durability], "wal")
    finally:
        await store.close()


async def test_default_is_fully_durable(tmp_path: Path) -> None:
    assert Config.model_validate({}).store.durability == "full"
    store = Store(f"sqlite+aiosqlite:///{tmp_path}/d.db", schemas=[metadata])
    await store.start()
    try:
        assert await store.write(_pragmas) == (SYNCHRONOUS["full"], "wal")
    finally:
        await store.close()


async def test_the_daemon_store_takes_the_configured_durability(tmp_path: Path) -> None:
    from telephonyd.app import build_store

    config = Config.model_validate({"store": {"url": f"sqlite+aiosqlite:///{tmp_path}/d.db", "durability": "normal"}})
    store = build_store(config)
    await store.start()
    try:
        assert await store.write(_pragmas) == (SYNCHRONOUS["normal"], "wal")
    finally:
        await store.close()


def test_unknown_durability_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="durability"):
        Config.model_validate({"store": {"durability": "off"}})
    with pytest.raises(ValueError, match="durability"):
        Store("sqlite+aiosqlite:///x.db", durability="off")


def test_durability_needs_a_restart() -> None:
    assert StoreConfig.RELOAD["durability"] == "restart"
