"""A VICIdial database on the real MariaDB (test schema, MyISAM) written the way VICIdial writes it,
and telephonyd nodes (store + outbox + VICIdial source) reading it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pymysql
from sqlalchemy.engine import make_url

from telephonyd.config import VICIdialConfig
from telephonyd.outbox import Outbox, metadata as outbox_metadata
from telephonyd.store import Store
from telephonyd.upstream import DID_OPTIMIZER_TARGET
from telephonyd.vicidial import VICIdialSource, metadata as vicidial_metadata
from telephonyd.vicidial.reader import VICIdialReader
from tests.outbox_harness import did_sender, fast_config

SCHEMA = Path(__file__).parent / "fixtures" / "vicidial" / "schema.sql"


def schema_statements() -> list[str]:
    text = "\n".join(line for line in SCHEMA.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split("\n;") if s.strip()]


class VICIdialDB:
    """VICIdial's database: created from the test schema; ``readonly_url`` has SELECT only."""

    def __init__(self, admin_url: str) -> None:
        url = make_url(admin_url)
        self.database = url.database
        self.params = {"host": url.host, "port": url.port or 3306, "user": url.username,
                       "password": url.password or "", "database": url.database, "autocommit": True}
        self.conn = pymysql.connect(**self.params)
        for stmt in schema_statements():
            self.execute(stmt)
        self.user = "td_ro_" + uuid.uuid4().hex[:8]
        password = uuid.uuid4().hex
        self.execute(f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{password}'")
        self.execute(f"GRANT SELECT ON `{self.database}`.* TO '{self.user}'@'%'")
        self.readonly_url = f"mysql+aiomysql://{self.user}:{password}@{url.host}:{url.port or 3306}/{url.database}"
        self.seq = random.randint(1000, 9000)

    def close(self) -> None:
        self.execute(f"DROP USER IF EXISTS '{self.user}'@'%'")
        self.conn.close()

    def execute(self, sql: str, args: Any = None) -> int:
        with self.conn.cursor() as cur:
            return cur.execute(sql, args)

    def query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def now(self) -> datetime:
        return self.query("SELECT NOW()")[0][0]

    # -- written as the dialer / FastAGI_log.pl / the agent screen write it ---------------------

    def dial(self, lead_id: int, did: str, *, uniqueid: str = "", at: datetime | None = None) -> str:
        """``vicidial_dial_log`` row of one dial attempt (AST_VDauto_dial.pl), with the DID presented."""
        at = at or self.now()
        caller_code = f"V{at:%m%d%H%M%S}{lead_id:010d}"
        self.execute(
            "INSERT INTO vicidial_dial_log (caller_code, lead_id, server_ip, call_date, extension, channel, "
            "context, timeout, outbound_cid, uniqueid) VALUES (%s,%s,'10.0.0.5',%s,%s,'','default',80,%s,%s)",
            (caller_code, lead_id, at, f"91555{lead_id:07d}", f'"{caller_code}" <{did}>', uniqueid),
        )
        return caller_code

    def log_call(self, uniqueid: str, lead_id: int, status: str, *, length: int = 0, at: datetime | None = None,
                 campaign: str = "TESTCAMP", user: str = "VDAD", term_reason: str = "NONE") -> None:
        """A ``vicidial_log`` row as the dialer inserts it (INCALL for a call sent to an agent,
        NA/B/DROP/A for calls that never reached one)."""
        at = at or self.now()
        epoch = int(at.timestamp())
        self.execute(
            "INSERT INTO vicidial_log (uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch, "
            "length_in_sec, status, phone_code, phone_number, user, comments, processed, user_group, term_reason, "
            "alt_dial, called_count) VALUES (%s,%s,1001,%s,%s,%s,%s,%s,%s,'1',%s,%s,'AUTO','N','AGENTS',%s,'MAIN',1)",
            (uniqueid, lead_id, campaign, at, epoch, epoch + length, length, status, f"555{lead_id:07d}", user,
             term_reason),
        )

    def disposition(self, uniqueid: str, status: str, user: str = "6666", length: int | None = None) -> None:
        """The agent screen's UPDATE of ``vicidial_log`` after the hangup."""
        extra = ", length_in_sec=%s" if length is not None else ""
        args = (status, user, *((length,) if length is not None else ()), uniqueid)
        assert self.execute(f"UPDATE vicidial_log SET status=%s, user=%s{extra} WHERE uniqueid=%s", args) == 1

    def closer_call(self, uniqueid: str, lead_id: int, status: str, *, ingroup: str = "SUPPORT", length: int = 0) -> int:
        at = self.now()
        self.execute(
            "INSERT INTO vicidial_closer_log (lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch, "
            "length_in_sec, status, phone_code, phone_number, user, comments, processed, queue_seconds, user_group, "
            "term_reason, uniqueid) VALUES (%s,1001,%s,%s,%s,%s,%s,%s,'1',%s,'VDCL','INBOUND','N',3.5,'AGENTS',"
            "'NONE',%s)",
            (lead_id, ingroup, at, int(at.timestamp()), int(at.timestamp()) + length, length, status,
             f"555{lead_id:07d}", uniqueid),
        )
        return int(self.query("SELECT LAST_INSERT_ID()")[0][0])

    def closer_disposition(self, closecallid: int, status: str) -> None:
        assert self.execute("UPDATE vicidial_closer_log SET status=%s, user='6666' WHERE closecallid=%s",
                            (status, closecallid)) == 1

    def uniqueid(self, at: datetime | None = None) -> str:
        self.seq += 1
        return f"{int((at or self.now()).timestamp())}.{self.seq}"


def source_config(**overrides: Any) -> VICIdialConfig:
    base: dict[str, Any] = {"enabled": True, "url": "mysql+aiomysql://x@127.0.0.1/x", "poll_interval_s": 0.05,
                            "batch_size": 50, "reread_window_s": 3600}
    return VICIdialConfig(**{**base, **overrides})


@dataclass
class Node:
    store: Store
    outbox: Outbox
    source: VICIdialSource
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.source.stop(5.0)
        await self.outbox.stop(2.0)
        for task in self.tasks:
            await asyncio.wait_for(task, 5.0)
        await self.store.close()


@asynccontextmanager
async def vicidial_node(store_url: str, vicidial: VICIdialDB, session: aiohttp.ClientSession, base_url: str, *,
                        node_id: str = "n1", run: bool = True, **overrides: Any) -> AsyncIterator[Node]:
    store = Store(store_url, schemas=[outbox_metadata, vicidial_metadata])
    await store.start()
    outbox = Outbox(store, node_id=node_id, config=fast_config(), rng=random.Random(1))
    outbox.register_sender(DID_OPTIMIZER_TARGET, did_sender(session, base_url), enabled=True)
    await outbox.start()
    config = source_config(**overrides)
    reader = VICIdialReader(vicidial.readonly_url, query_timeout_s=5.0)
    source = VICIdialSource(config, store, outbox, target=DID_OPTIMIZER_TARGET, node_id=node_id, reader=reader)
    await source.start()
    node = Node(store, outbox, source)
    if run:
        loop = asyncio.get_running_loop()
        node.tasks = [loop.create_task(outbox.run()), loop.create_task(source.run())]
    try:
        yield node
    finally:
        await node.stop()


def back(seconds: float, at: datetime) -> datetime:
    return at - timedelta(seconds=seconds)
