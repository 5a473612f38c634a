"""`ContactsWriter` writes ``ps_contacts`` through the store's one write path (`Store.write`), on
SQLite and on MariaDB: batches, a clash with another reg_server's id, a resync's reconcile, and
asterisk mode touching only the status columns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from telephonyd.contacts.model import Contact, contact_id
from telephonyd.contacts.schema import metadata, ps_contacts
from telephonyd.contacts.state import everything
from telephonyd.contacts.writer import ContactsWriter
from telephonyd.store import Store

A = contact_id("1010", "sip:1010@127.0.0.1:5070")
B = contact_id("1011", "sip:1011@127.0.0.1:5071")
C = contact_id("1012", "sip:1012@127.0.0.1:5072")


def contact(cid: str, status: str = "Reachable", **fields: Any) -> Contact:
    aor = cid.split(";@", 1)[0]
    return Contact(cid, endpoint=aor, uri=f"sip:{aor}@127.0.0.1", status=status, roundtrip_usec=100,
                   status_updated_at=1.0, expiration_time=2_000_000_000, **fields)


@pytest.fixture
async def store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    s = Store(store_url, schemas=[metadata])
    await s.start()
    writes = []
    real_write = s.write

    async def counted(work: Any, **options: Any) -> Any:
        writes.append(options)
        return await real_write(work, **options)

    monkeypatch.setattr(s, "write", counted)
    s.writes = writes  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        await s.close()


async def table(store: Store) -> dict[str, dict[str, Any]]:
    async with store.connect() as conn:
        result = await conn.execute(sa.select(ps_contacts))
        return {row.id: dict(row._mapping) for row in result}


async def test_a_batch_is_one_store_write_and_leaves_another_reg_servers_id_alone(store: Store) -> None:
    other = ContactsWriter(store, reg_server="other", owned=True)
    await other.apply(new_rows=[contact(C, "Unreachable")])
    writer = ContactsWriter(store, reg_server="here", owned=True)
    await writer.prepare()
    store.writes.clear()  # type: ignore[attr-defined]
    statements = await writer.apply(rows=[contact(A)], new_rows=[contact(B), contact(C)])
    assert store.writes == [{}]  # type: ignore[attr-defined]  # one transaction through Store.write
    assert statements == 2  # one DELETE, one multi-row INSERT
    rows = await table(store)
    assert {cid: (r["reg_server"], r["status"]) for cid, r in rows.items()} == {
        A: ("here", "Reachable"), B: ("here", "Reachable"), C: ("other", "Unreachable")}
    assert writer.clashes == 1

    await writer.apply(statuses=[contact(A, "Unreachable")], deletes=[B, C])
    rows = await table(store)
    assert {cid: (r["reg_server"], r["status"]) for cid, r in rows.items()} == {
        A: ("here", "Unreachable"), C: ("other", "Unreachable")}


async def test_reconcile_makes_the_rows_match_the_listing_in_one_write(store: Store) -> None:
    writer = ContactsWriter(store, reg_server="here", owned=True)
    await writer.prepare()
    await writer.apply(new_rows=[contact(A), contact(B)])
    store.writes.clear()  # type: ignore[attr-defined]
    plan, stamped = await writer.reconcile({A: contact(A, "Unreachable"), C: contact(C)}, scope=everything)
    assert store.writes == [{}]  # type: ignore[attr-defined]
    assert set(stamped) == {A, C} and list(plan.removed) == [B]
    rows = await table(store)
    assert {cid: r["status"] for cid, r in rows.items()} == {A: "Unreachable", C: "Reachable"}


async def test_asterisk_mode_writes_only_the_status_of_asterisks_rows(store: Store) -> None:
    asterisk = ContactsWriter(store, reg_server="asterisk-1", owned=True)  # stands in for Asterisk's own rows
    await asterisk.apply(new_rows=[contact(A, "Reachable", user_agent="Zoiper")])
    writer = ContactsWriter(store, reg_server="here", owned=False)
    await writer.prepare()
    await writer.apply(statuses=[contact(A, "Unreachable")], rows=[contact(B)])
    rows = await table(store)
    assert set(rows) == {A}  # no row created in asterisk mode
    assert (rows[A]["status"], rows[A]["reg_server"], rows[A]["user_agent"]) == ("Unreachable", "asterisk-1", "Zoiper")
    assert await writer.stale_statuses({A: contact(A, "Reachable")}) == [contact(A, "Reachable")]
