"""ps_contacts on a real MariaDB: our schema, Asterisk's own alembic schema, both modes, reg_server scope."""

from __future__ import annotations

import time
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from telephonyd.contacts import contact_id
from telephonyd.contacts.schema import metadata, ps_contacts
from telephonyd.errors import StoreError
from telephonyd.store import Store
from tests.component.contacts_rig import contacts_rig, until
from tests.fakes.ami import FakeAMIServer, FakeContact

pytestmark = pytest.mark.mariadb

BOOL = "ENUM('0','1','off','on','false','true','no','yes')"

#: ps_contacts as Asterisk 22's alembic migrations leave it on MySQL/MariaDB (contrib/ast-db-manage:
#: 43956d550a44 + e96a0b8071c + 81b01a191a46 + ef7efc2d3964 + 1d3ed26d9978 + 1ae0609b6646 + later
#: column additions, booleans as ast_bool_values).
ASTERISK_DDL = [
    f"""CREATE TABLE ps_contacts (
        id VARCHAR(255) NOT NULL,
        uri VARCHAR(511),
        expiration_time BIGINT,
        qualify_frequency INTEGER,
        outbound_proxy VARCHAR(255),
        path TEXT,
        user_agent VARCHAR(255),
        qualify_timeout FLOAT,
        reg_server VARCHAR(255),
        authenticate_qualify {BOOL},
        via_addr VARCHAR(40),
        via_port INTEGER,
        call_id VARCHAR(255),
        endpoint VARCHAR(255),
        prune_on_boot {BOOL},
        qualify_2xx_only {BOOL},
        UNIQUE (id),
        CONSTRAINT ps_contacts_uq UNIQUE (id, reg_server)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "CREATE INDEX ps_contacts_id ON ps_contacts (id)",
    "CREATE INDEX ps_contacts_qualifyfreq_exp ON ps_contacts (qualify_frequency, expiration_time)",
]


def mysql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.database, autocommit=True)
    try:
        rows: list[tuple[Any, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows
    finally:
        conn.close()


def columns(url: str) -> list[str]:
    return [r[0] for r in mysql(url, "SHOW COLUMNS FROM ps_contacts")]


def indexes(url: str) -> set[tuple[str, int, str]]:
    return {(r[2], r[1], r[4]) for r in mysql(url, "SHOW INDEX FROM ps_contacts")}  # (name, non_unique, column)


async def test_our_schema_creates_asterisks_table_with_utf8mb4_keys(mariadb_url: str) -> None:
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    try:
        assert columns(mariadb_url)[:16] == [c.name for c in ps_contacts.columns][:16]
        idx = indexes(mariadb_url)
        assert {("id", 0, "id"), ("ps_contacts_uq", 0, "id"), ("ps_contacts_uq", 0, "reg_server"),
                ("ps_contacts_id", 1, "id"), ("ps_contacts_qualifyfreq_exp", 1, "qualify_frequency")} <= idx
        assert not any(name == "PRIMARY" for name, _, _ in idx)
        create = mysql(mariadb_url, "SHOW CREATE TABLE ps_contacts")[0][1]
        assert "utf8mb4" in create
        # Full-length 4-byte ids fit the unique keys (3,072-byte limit of DYNAMIC rows).
        long_id = "😀" * 200 + ";@" + "f" * 32
        async with store.begin() as conn:
            await conn.execute(ps_contacts.insert().values(id=long_id, reg_server="é" * 255))
        async with store.connect() as conn:
            got = (await conn.execute(sa.select(ps_contacts.c.id, ps_contacts.c.reg_server))).one()
        assert got == (long_id, "é" * 255)
    finally:
        await store.close()


async def test_asterisk_managed_table_gets_only_our_columns(mariadb_url: str) -> None:
    mysql(mariadb_url, *ASTERISK_DDL)
    before_cols, before_idx = columns(mariadb_url), indexes(mariadb_url)
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    try:
        assert columns(mariadb_url) == before_cols + ["status", "roundtrip_usec", "status_updated_at"]
        assert indexes(mariadb_url) == before_idx
        # Asterisk's realtime INSERT names only its own columns: still valid with ours added.
        mysql(mariadb_url, "INSERT INTO ps_contacts (id, uri, expiration_time, qualify_frequency, reg_server, "
                           "authenticate_qualify, prune_on_boot, qualify_2xx_only, endpoint) VALUES "
                           "('1010;@x', 'sip:1010@h', 1, 60, 'pbx', 'no', 'yes', 'false', '1010')")
        await store.close()
        await store.start()  # a second start changes nothing
        assert columns(mariadb_url) == before_cols + ["status", "roundtrip_usec", "status_updated_at"]
    finally:
        await store.close()


def foreign_rows(url: str) -> None:
    """Another Asterisk's contacts in the same table (reg_server ast2)."""
    mysql(url, "INSERT INTO ps_contacts (id, uri, reg_server, endpoint, expiration_time, status) VALUES "
               "('2001;@aa', 'sip:2001@10.0.0.2', 'ast2', '2001', 1, 'Reachable'), "
               "('2002;@bb', 'sip:2002@10.0.0.3', 'ast2', '2002', 1, 'Unreachable')")


async def test_owned_mode_converges_and_touches_only_its_reg_server(mariadb_url: str) -> None:
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    foreign_rows(mariadb_url)
    mysql(mariadb_url, "INSERT INTO ps_contacts (id, uri, reg_server, endpoint) VALUES "
                       "('9999;@stale', 'sip:9999@gone', 'ast1', '9999')")
    try:
        async with contacts_rig(mariadb_url, store=store) as rig:
            await rig.synced()
            assert set(await rig.rows(reg_server="ast1")) == set()  # our stale row is gone
            assert set(await rig.rows(reg_server="ast2")) == {"2001;@aa", "2002;@bb"}
            contact = rig.fake.register("1010")
            rows = await rig.wait_rows(lambda r: r.get(contact.id, {}).get("user_agent") == "sipp-lab")
            assert rows[contact.id]["status"] == "Reachable" and rows[contact.id]["reg_server"] == "ast1"
            rig.fake.set_reachability(contact.id, False)
            await rig.wait_rows(lambda r: r[contact.id]["status"] == "Unreachable")
            rig.fake.set_reachability(contact.id, True)
            await rig.wait_rows(lambda r: r[contact.id]["status"] == "Reachable")
            rig.fake.unregister(contact.id)
            rows = await rig.wait_rows(lambda r: contact.id not in r)
            assert set(rows) == {"2001;@aa", "2002;@bb"}
            rig.fake.add_contacts_silently([FakeContact("1011", "1011", "sip:1011@127.0.0.1:5071")])
            result = await rig.sync.resync()
            assert (result["added"], result["removed"], result["total"]) == (1, 0, 1)
            rows = await rig.rows()
            assert rows["2001;@aa"]["status"] == "Reachable" and rows["2002;@bb"]["status"] == "Unreachable"
    finally:
        await store.close()


async def test_an_id_held_by_another_reg_server_is_left_alone(mariadb_url: str) -> None:
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    cid = contact_id("1010", "sip:1010@127.0.0.1:5070")
    mysql(mariadb_url, f"INSERT INTO ps_contacts (id, uri, reg_server, endpoint) VALUES ('{cid}', 'x', 'ast2', '1010')")
    try:
        async with contacts_rig(mariadb_url, store=store, setup=lambda f: f.register("1010")) as rig:
            await rig.synced()
            rows = await rig.rows()
            assert rows[cid]["reg_server"] == "ast2" and rows[cid]["uri"] == "x"
            assert rig.sync.health()["id_clashes"] == 1
    finally:
        await store.close()


async def test_asterisk_mode_on_asterisks_own_table(mariadb_url: str) -> None:
    """Asterisk writes rows through realtime; we only fill our status columns."""
    mysql(mariadb_url, *ASTERISK_DDL)
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    fake = await FakeAMIServer(secret="rig-secret").start()

    def asterisk_inserts(c: FakeContact) -> None:
        mysql(mariadb_url, "INSERT INTO ps_contacts (id, uri, expiration_time, qualify_frequency, reg_server, "
                           "endpoint, user_agent, prune_on_boot) VALUES "
                           f"('{c.id}', '{c.uri}', {int(time.time()) + 60}, 5, 'pbx1', '{c.endpoint}', "
                           "'sipp-lab', 'no')")

    try:
        existing = FakeContact("1010", "1010", "sip:1010@127.0.0.1:5070", status="Reachable", rtt_usec=500)
        fake.add_contacts_silently([existing])
        asterisk_inserts(existing)
        foreign_rows(mariadb_url)
        async with contacts_rig(mariadb_url, store=store, fake=fake, mode="asterisk") as rig:
            await rig.synced()
            rows = await rig.rows()
            assert rows[existing.id]["status"] == "Reachable" and rows[existing.id]["roundtrip_usec"] == 500
            before = {k: {c: v for c, v in r.items() if c not in ("status", "roundtrip_usec", "status_updated_at")}
                      for k, r in rows.items()}
            # A REGISTER: Asterisk inserts the row, then announces the contact.
            new = FakeContact("1011", "1011", "sip:1011@127.0.0.1:5071")
            asterisk_inserts(new)
            fake.register("1011", uri=new.uri)
            rows = await rig.wait_rows(lambda r: r[new.id]["status"] == "Reachable")
            fake.set_reachability(existing.id, False)
            rows = await rig.wait_rows(lambda r: r[existing.id]["status"] == "Unreachable")
            # Unregister: Asterisk deletes its row; we never write it back.
            mysql(mariadb_url, f"DELETE FROM ps_contacts WHERE id = '{existing.id}'")
            fake.unregister(existing.id)
            await rig.settled(events=5)
            rows = await rig.rows()
            assert existing.id not in rows
            assert {k: {c: v for c, v in r.items() if c not in ("status", "roundtrip_usec", "status_updated_at")}
                    for k, r in rows.items() if k != new.id} == {k: v for k, v in before.items() if k != existing.id}
            assert rows["2001;@aa"]["status"] == "Reachable"  # another reg_server's status untouched
            result = await rig.sync.resync()
            assert result["missing"] == 0 and result["total"] == 1
            assert set(await rig.rows()) == {new.id, "2001;@aa", "2002;@bb"}
    finally:
        await store.close()
        await fake.stop()


async def test_many_contacts_converge_to_asterisks_view(mariadb_url: str) -> None:
    """Many contacts going through the recorded sequences end exactly as Asterisk holds them."""
    store = Store(mariadb_url, schemas=[metadata])
    await store.start()
    try:
        async with contacts_rig(mariadb_url, store=store, coalesce_s=0.02) as rig:
            await rig.synced()
            made = [rig.fake.register(f"3{n:03d}") for n in range(40)]
            for contact in made[::3]:
                rig.fake.set_reachability(contact.id, False)
            for contact in made[::4]:
                rig.fake.unregister(contact.id)
            expected = {cid: c.status for cid, c in rig.fake.contacts.items()}
            await rig.wait_rows(lambda r: {k: v["status"] for k, v in r.items()} == expected, timeout=10)
            await until(lambda: rig.sync.health()["pending_writes"] == 0)
            rows = await rig.rows()
            assert all(r["expiration_time"] and r["user_agent"] == "sipp-lab" for r in rows.values())
            # Only a full listing tells PruneOnBoot (PJSIPShowEndpoint's details lack it)...
            assert {r["prune_on_boot"] for r in rows.values()} == {None}
            result = await rig.sync.resync()
            assert (result["added"], result["updated"], result["removed"]) == (0, len(rows), 0)
            assert {r["prune_on_boot"] for r in (await rig.rows()).values()} == {"no"}
            # ...after which the table is exactly Asterisk's view: nothing left to change.
            result = await rig.sync.resync()
            assert (result["added"], result["updated"], result["removed"]) == (0, 0, 0)
    finally:
        await store.close()


async def test_a_table_of_an_older_asterisk_is_written_without_its_missing_columns(mariadb_url: str) -> None:
    """Asterisk 20.11's table has no qualify_2xx_only (added by alembic 44bd6dd914fa, Dec 2024)."""
    ours = ("ALTER TABLE ps_contacts ADD COLUMN status VARCHAR(40), ADD COLUMN roundtrip_usec BIGINT, "
            "ADD COLUMN status_updated_at DOUBLE")
    old = [ASTERISK_DDL[0].replace(f"qualify_2xx_only {BOOL},\n", ""), *ASTERISK_DDL[1:], ours]
    mysql(mariadb_url, *old)
    assert "qualify_2xx_only" not in columns(mariadb_url)
    store = Store(mariadb_url)  # no migration: the table is Asterisk's, with our columns
    await store.start()
    try:
        async with contacts_rig(mariadb_url, store=store, setup=lambda f: f.register("1010")) as rig:
            await rig.synced()
            contact = rig.fake.register("1011")
            rows = await rig.wait_rows(lambda r: r.get(contact.id, {}).get("user_agent") == "sipp-lab")
            assert set(rows) == {contact_id("1010", "sip:1010@127.0.0.1:5070"), contact.id}
            assert "qualify_2xx_only" not in rows[contact.id]
        mysql(mariadb_url, "ALTER TABLE ps_contacts DROP COLUMN status")
        with pytest.raises(StoreError, match="no status column"):
            async with contacts_rig(mariadb_url, store=store):
                pass
    finally:
        await store.close()
