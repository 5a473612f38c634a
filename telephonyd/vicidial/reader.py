"""Reads from VICIdial's database: indexed range reads with a bounded batch, never a write.

Facts from VICIdial's schema (``extras/MySQL_AST_CREATE_tables.sql``; see ``vicidial.md``): every
table here is MyISAM (no transactions: a row is visible as soon as it is written);
``vicidial_log`` has PRIMARY KEY ``uniqueid`` and indexes on ``lead_id`` and ``call_date``;
``vicidial_closer_log`` PRIMARY KEY ``closecallid`` (AUTO_INCREMENT) and indexes on ``lead_id``,
``call_date``, ``uniqueid``; ``vicidial_dial_log`` indexes on ``caller_code``, ``lead_id``,
``call_date``. No table has a modification time, so a later status change is seen only by reading
the row again.

Every statement is one of: a ``call_date`` range in index order with ``LIMIT``; a primary-key
``IN`` list; a ``lead_id IN`` list bounded by ``call_date``; ``MAX()`` of an indexed column; the
two small status tables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .payload import CLOSER_LOG, LOG, STATUS_FLAGS, DialMatch, did_of, flags_of

_COMMON = (
    "uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch, length_in_sec, status, "
    "phone_code, phone_number, user, comments, user_group, term_reason, called_count"
)
COLUMNS = {
    LOG: _COMMON + ", alt_dial",
    CLOSER_LOG: "closecallid, " + _COMMON + ", queue_seconds",
}
KEY_COLUMN = {LOG: "uniqueid", CLOSER_LOG: "closecallid"}
#: Rows of one ``call_date`` second read at most when a whole batch shares that second.
MAX_SAME_SECOND = 100_000


@dataclass(slots=True)
class RangeRead:
    """Rows of one ``call_date`` range read, in ``call_date`` order.

    ``next_date``: where the next read starts (every row before it was returned); ``complete``:
    the range held fewer rows than the batch (the reader reached its end).
    """

    rows: list[dict[str, Any]]
    next_date: datetime
    complete: bool


class StatusBook:
    """Status flags: per campaign (``vicidial_campaign_statuses``) over system-wide (``vicidial_statuses``)."""

    def __init__(self, system: dict[str, dict[str, bool]], campaign: dict[tuple[str, str], dict[str, bool]]) -> None:
        self.system = system
        self.campaign = campaign

    def flags(self, campaign_id: str, status: str) -> dict[str, bool] | None:
        return self.campaign.get((campaign_id, status)) or self.system.get(status)


class VICIdialReader:
    """A small read-only pool on VICIdial's database (``mysql+aiomysql://``, autocommit).

    Every statement is bounded by ``query_timeout_s`` (`TimeoutError`); database errors surface as
    SQLAlchemy errors. ``queries`` counts statements sent.
    """

    def __init__(self, url: str, *, query_timeout_s: float = 10.0, pool_size: int = 2) -> None:
        self.url = url
        self.query_timeout_s = query_timeout_s
        self.pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self.queries = 0

    async def start(self) -> None:
        self._engine = create_async_engine(
            self.url,
            pool_size=self.pool_size,
            max_overflow=0,
            pool_recycle=1800,
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": int(max(1, self.query_timeout_s))},
        )

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()

    async def _all(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self._engine is None:
            raise RuntimeError("VICIdialReader is not started")
        self.queries += 1
        async with asyncio.timeout(self.query_timeout_s):
            async with self._engine.connect() as conn:
                result = await conn.execute(sa.text(sql), params or {})
                return [dict(r) for r in result.mappings().all()]

    # -- clocks and positions ----------------------------------------------------------------------

    async def now(self) -> datetime:
        """VICIdial's database clock (``NOW()``, the clock ``call_date`` is written with)."""
        return (await self._all("SELECT NOW() AS now"))[0]["now"]

    async def newest(self, table: str) -> tuple[datetime | None, int | None]:
        """``MAX(call_date)`` and, for the closer log, ``MAX(closecallid)`` (index reads only)."""
        extra = ", MAX(closecallid) AS top" if table == CLOSER_LOG else ", NULL AS top"
        row = (await self._all(f"SELECT MAX(call_date) AS newest{extra} FROM {table}"))[0]  # noqa: S608
        return row["newest"], (int(row["top"]) if row["top"] is not None else None)

    async def first_closecallid_since(self, since: datetime) -> int:
        """The last ``closecallid`` before ``since`` (0 when none): where reading by id starts."""
        rows = await self._all(
            "SELECT MIN(closecallid) AS first FROM vicidial_closer_log WHERE call_date >= :since", {"since": since}
        )
        first = rows[0]["first"]
        return int(first) - 1 if first is not None else int((await self.newest(CLOSER_LOG))[1] or 0)

    # -- rows ---------------------------------------------------------------------------------------

    async def by_call_date(self, table: str, since: datetime, before: datetime | None, limit: int) -> RangeRead:
        """Rows with ``since <= call_date [< before]`` in index order, at most about ``limit``.

        A full batch ends on a whole second: rows of its last second are left for the next read
        (which starts at that second), so nothing between two reads is skipped whatever the order
        of the primary keys. A batch that is all one second reads that second whole.
        """
        upper = " AND call_date < :before" if before is not None else ""
        params: dict[str, Any] = {"since": since, "before": before, "limit": int(limit)}
        rows = await self._all(
            f"SELECT {COLUMNS[table]} FROM {table} WHERE call_date >= :since{upper} "  # noqa: S608
            "ORDER BY call_date LIMIT :limit",
            params,
        )
        if len(rows) < limit:
            return RangeRead(rows, rows[-1]["call_date"] if rows else since, True)
        last = rows[-1]["call_date"]
        kept = [r for r in rows if r["call_date"] < last]
        if kept:
            return RangeRead(kept, last, False)
        same = await self._all(
            f"SELECT {COLUMNS[table]} FROM {table} WHERE call_date = :at LIMIT :cap",  # noqa: S608
            {"at": last, "cap": MAX_SAME_SECOND},
        )
        return RangeRead(same, last + timedelta(seconds=1), False)

    async def counts_by_second(self, table: str, since: datetime, before: datetime) -> dict[datetime, int]:
        """Rows per ``call_date`` second in ``[since, before)``: read from the ``call_date`` index
        alone (no table row is read), to find seconds that gained rows after they were read."""
        rows = await self._all(
            f"SELECT call_date, COUNT(*) AS n FROM {table} WHERE call_date >= :since AND call_date < :before "  # noqa: S608
            "GROUP BY call_date",
            {"since": since, "before": before},
        )
        return {r["call_date"]: int(r["n"]) for r in rows}

    async def by_seconds(self, table: str, seconds: Sequence[datetime]) -> list[dict[str, Any]]:
        """Every row of the given ``call_date`` seconds (index lookups)."""
        if not seconds:
            return []
        stmt = sa.text(f"SELECT {COLUMNS[table]} FROM {table} WHERE call_date IN :seconds LIMIT :cap").bindparams(  # noqa: S608
            sa.bindparam("seconds", expanding=True)
        )
        return await self._all_stmt(stmt, {"seconds": list(seconds), "cap": MAX_SAME_SECOND})

    async def closer_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Closer rows with ``closecallid > after_id`` in id order (insertion order), at most ``limit``."""
        return await self._all(
            f"SELECT {COLUMNS[CLOSER_LOG]} FROM vicidial_closer_log WHERE closecallid > :after "  # noqa: S608
            "ORDER BY closecallid LIMIT :limit",
            {"after": int(after_id), "limit": int(limit)},
        )

    async def by_keys(self, table: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Rows by primary key (``uniqueid`` or ``closecallid``)."""
        if not keys:
            return []
        column = KEY_COLUMN[table]
        values = [int(k) for k in keys] if table == CLOSER_LOG else list(keys)
        stmt = sa.text(f"SELECT {COLUMNS[table]} FROM {table} WHERE {column} IN :keys").bindparams(  # noqa: S608
            sa.bindparam("keys", expanding=True)
        )
        return await self._all_stmt(stmt, {"keys": values})

    async def _all_stmt(self, stmt: sa.TextClause, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._engine is None:
            raise RuntimeError("VICIdialReader is not started")
        self.queries += 1
        async with asyncio.timeout(self.query_timeout_s):
            async with self._engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(stmt, params)).mappings().all()]

    async def dial_matches(self, rows: Iterable[dict[str, Any]], match_s: float) -> dict[str, DialMatch]:
        """The ``vicidial_dial_log`` row of each call (keyed by the row's ``uniqueid``).

        One statement for the batch: ``lead_id IN (...)`` within the batch's ``call_date`` span
        widened by ``match_s``. Per call, a dial row whose ``uniqueid`` equals the call's wins, else
        the same lead's dial row nearest in time within ``match_s``.
        """
        wanted = [r for r in rows if r.get("lead_id") and isinstance(r.get("call_date"), datetime)]
        if not wanted:
            return {}
        span = timedelta(seconds=match_s)
        stmt = sa.text(
            "SELECT caller_code, lead_id, call_date, outbound_cid, uniqueid FROM vicidial_dial_log "
            "WHERE lead_id IN :leads AND call_date BETWEEN :lo AND :hi"
        ).bindparams(sa.bindparam("leads", expanding=True))
        dials = await self._all_stmt(stmt, {
            "leads": sorted({int(r["lead_id"]) for r in wanted}),
            "lo": min(r["call_date"] for r in wanted) - span,
            "hi": max(r["call_date"] for r in wanted) + span,
        })
        by_lead: dict[int, list[dict[str, Any]]] = {}
        for d in dials:
            by_lead.setdefault(int(d["lead_id"]), []).append(d)
        found: dict[str, DialMatch] = {}
        for r in wanted:
            best = _best_dial(r, by_lead.get(int(r["lead_id"]), []), match_s)
            if best is not None:
                found[str(r["uniqueid"])] = DialMatch(
                    did=did_of(best.get("outbound_cid")),
                    caller_code=str(best.get("caller_code") or ""),
                    uniqueid=str(best.get("uniqueid") or ""),
                )
        return found

    async def status_book(self) -> StatusBook:
        """Both status tables (a few hundred rows at most)."""
        cols = ", ".join(STATUS_FLAGS)
        system = {
            str(r["status"]).upper(): flags_of(r)
            for r in await self._all(f"SELECT status, {cols} FROM vicidial_statuses")  # noqa: S608
        }
        campaign = {
            (str(r["campaign_id"] or ""), str(r["status"]).upper()): flags_of(r)
            for r in await self._all(f"SELECT campaign_id, status, {cols} FROM vicidial_campaign_statuses")  # noqa: S608
        }
        return StatusBook(system, campaign)


def _best_dial(row: dict[str, Any], dials: list[dict[str, Any]], match_s: float) -> dict[str, Any] | None:
    uniqueid = str(row.get("uniqueid") or "")
    for d in dials:
        if uniqueid and str(d.get("uniqueid") or "") == uniqueid:
            return d
    near = [
        (abs((d["call_date"] - row["call_date"]).total_seconds()), d)
        for d in dials
        if isinstance(d.get("call_date"), datetime)
    ]
    near = [(gap, d) for gap, d in near if gap <= match_s]
    return min(near, key=lambda p: p[0])[1] if near else None
