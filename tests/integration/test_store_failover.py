"""Store failover between servers of one database (`store.urls`), against the real MariaDB behind
loopback forwarders that die or hang like a database node (`tests.fakes.tcp_proxy`)."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from telephonyd.errors import StoreError
from telephonyd.outbox.schema import metadata as outbox_metadata
from telephonyd.store import Store
from tests.helpers import wait_until
from tests.fakes.tcp_proxy import TCPProxy


def _via(url: str, port: int) -> str:
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


async def _proxies(url: str, n: int) -> list[TCPProxy]:
    target = make_url(url)
    return [await TCPProxy(target.host or "127.0.0.1", target.port or 3306).start() for _ in range(n)]


async def _writes(store: Store) -> bool:
    try:
        await store.write(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        return True
    except Exception:  # noqa: BLE001 - not yet on a server that answers
        return False


@pytest.mark.parametrize("failure", ["dies", "hangs"])
async def test_the_store_moves_to_the_next_server_within_5_s_and_back_later(mariadb_url, failure) -> None:
    first, second = await _proxies(mariadb_url, 2)
    store = Store(_via(mariadb_url, first.port), schemas=[outbox_metadata], connect_timeout_s=2.0,
                  urls=[_via(mariadb_url, first.port), _via(mariadb_url, second.port)])
    await store.start()
    try:
        assert store.describe()["url_index"] == 0 and await store.ping()
        store._failover.failback_s = 1.0  # noqa: SLF001 - come back quickly in the test
        started = time.monotonic()
        if failure == "dies":
            await first.kill()
        else:
            first.freeze()
        await wait_until(lambda: store.describe()["url_index"] == 1, timeout=5.0, what="failover to the second server")
        await wait_until(lambda: _writes(store), timeout=5.0 - (time.monotonic() - started), what="a write after failover")
        assert f":{second.port}/" in store.describe()["url"] and store.describe()["failovers"] == 1
        if failure == "dies":
            await first.revive()
        else:
            first.frozen = False
        await wait_until(lambda: store.describe()["url_index"] == 0, timeout=10.0, what="back on the first server")
        assert await _writes(store)
    finally:
        await store.close()
        for proxy in (first, second):
            await proxy.kill()


async def test_a_transaction_hung_on_a_frozen_server_is_cut_when_the_store_switches(mariadb_url) -> None:
    """A write waiting on a server that stopped answering (no caller timeout here) ends with a
    retryable `StoreError` at the switch, not when the server comes back; the next write goes
    through the second server."""
    first, second = await _proxies(mariadb_url, 2)
    store = Store(_via(mariadb_url, first.port), schemas=[outbox_metadata], connect_timeout_s=2.0,
                  urls=[_via(mariadb_url, first.port), _via(mariadb_url, second.port)])
    await store.start()
    try:
        assert await _writes(store)
        first.freeze()
        with pytest.raises(StoreError, match="transaction cut") as caught:
            async with asyncio.timeout(5.0):  # the failover's bound; without the cut: forever
                await store.write(lambda conn: conn.execute(sa.text("SELECT 1")).scalar())
        assert caught.value.retryable and store.describe()["url_index"] == 1
        assert await _writes(store)
    finally:
        await store.close()
        for proxy in (first, second):
            await proxy.kill()


async def test_start_takes_the_first_server_that_answers(mariadb_url) -> None:
    dead, live = await _proxies(mariadb_url, 2)
    await dead.kill()
    store = Store(_via(mariadb_url, dead.port), schemas=[outbox_metadata], connect_timeout_s=1.0,
                  urls=[_via(mariadb_url, dead.port), _via(mariadb_url, live.port)])
    await store.start()
    try:
        assert store.describe()["url_index"] == 1 and await _writes(store)
    finally:
        await store.close()
        await live.kill()


async def test_start_fails_retryably_when_no_server_answers(mariadb_url) -> None:
    a, b = await _proxies(mariadb_url, 2)
    await a.kill()
    await b.kill()
    store = Store(_via(mariadb_url, a.port), schemas=[outbox_metadata], connect_timeout_s=1.0,
                  urls=[_via(mariadb_url, a.port), _via(mariadb_url, b.port)])
    with pytest.raises(StoreError) as caught:
        await store.start()
    assert caught.value.retryable and "2 tried" in str(caught.value)
