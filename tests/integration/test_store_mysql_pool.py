"""MariaDB pool round trips (real MariaDB): a transaction is INSERT/SELECT/COMMIT with no ping and no
ROLLBACK while the pool is busy, yet a connection the server dropped while it rested in the pool is
found out before use and replaced, and a transaction left open is rolled back on return."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from telephonyd.outbox import metadata
from telephonyd.store import Store
from telephonyd.store import engine as engine_module


@pytest.fixture
async def store(mariadb_url: str) -> AsyncIterator[Store]:
    store = Store(mariadb_url, schemas=[metadata], pool_size=1)
    await store.start()
    yield store
    await store.close()


def _connection_id(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())


def _in_transaction(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT COUNT(*) FROM information_schema.innodb_trx "
                                    "WHERE trx_mysql_thread_id = CONNECTION_ID()").scalar_one())


async def _kill(store: Store, victim: int) -> None:
    killer = Store(store.url)
    await killer.start()
    try:
        async with killer.begin() as conn:
            await conn.execute(sa.text(f"KILL {victim}"))
    finally:
        await killer.close()


async def test_no_ping_and_no_rollback_while_busy(store: Store, monkeypatch) -> None:
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: statements.append(statement))
    pings: list[int] = []
    monkeypatch.setattr(store.engine.sync_engine.dialect, "do_ping", lambda _c: pings.append(1) or True)
    rollbacks: list[int] = []
    sa.event.listen(store.engine.sync_engine, "rollback", lambda _c: rollbacks.append(1))
    for _ in range(3):
        await store.write(_connection_id)
    assert pings == [] and rollbacks == []
    assert statements == ["SELECT CONNECTION_ID()"] * 3


async def test_a_connection_dropped_while_resting_is_replaced_before_use(store: Store, monkeypatch) -> None:
    first = await store.write(_connection_id)
    await _kill(store, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_REST_S", 0.0)  # it has rested long enough
    second = await store.write(_connection_id)
    assert second != first


async def test_without_the_ping_a_dropped_connection_fails(store: Store, monkeypatch) -> None:
    """The counterpart of the test above: a connection used within the rest time is not pinged."""
    first = await store.write(_connection_id)
    await _kill(store, first)
    monkeypatch.setattr(engine_module, "PING_AFTER_REST_S", 3600.0)
    with pytest.raises(sa.exc.DBAPIError):
        await store.write(_connection_id)


async def test_an_open_transaction_is_rolled_back_on_return(store: Store) -> None:
    async with store.connect() as conn:
        raw = await conn.get_raw_connection()
        # Open a transaction behind SQLAlchemy's back, as a stray driver use would.
        # (A result set's EOF packet leaves the driver's SERVER_STATUS_IN_TRANS flag as it was.)
        await raw.driver_connection.query("SELECT id FROM outbox FOR UPDATE")
    assert await store.write(_in_transaction) == 0
