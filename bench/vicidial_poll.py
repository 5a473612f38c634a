#!/usr/bin/env python3
"""The VICIdial source against a big ``vicidial_log``: lag and the load it puts on VICIdial's database.

A fresh MariaDB database gets VICIdial's tables (test schema, MyISAM) and ``--rows`` vicidial_log
rows spread over the last ``--history-h`` hours (multi-row INSERTs with the keys disabled while
loading). Then for ``--duration`` s a writer thread changes ``--rate`` rows/s the way VICIdial does:
new rows with a final status (the dialer's NA, B, DROP, A, dated ``--late-s`` in the past as the
dialer dates them when the call was placed), new INCALL rows (calls sent to an agent)
and INCALL rows changed to SALE/NI/CALLBK 5+ s later (the agent screen). The source runs with its
defaults (poll every 5 s, batches of 1000, 2 h re-read window) into an SQLite store.

Reported:
- lag per reported status: from the writer's INSERT/UPDATE to its outbox row's commit (the store's
  ``created_at``), p50/p99/max, and how many of the written final statuses were reported (must be
  all, each once);
- the source's own "lag behind the newest row" (newest ``call_date`` minus the head checkpoint),
  sampled every second;
- queries/s sent to VICIdial's database and rows examined per poll (``Handler_read_*`` of the
  source's one connection: ``SHOW SESSION STATUS`` before and after);
- baselines in the same run: the bare head query alone (time and rows examined), and the DID
  Optimizer's cron query (``uniqueid > :cp AND call_date >= CURDATE() ... ORDER BY uniqueid LIMIT
  500``) for comparison; EXPLAIN of the source's range reads.

  /work/venv/bin/python bench/vicidial_poll.py                          # 1,000,000 rows, 500 rows/s, 60 s
  /work/venv/bin/python bench/vicidial_poll.py --rows 100000 --duration 20

``--url`` names the MariaDB server (a database ``td_bench_<random>`` is created and dropped on it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.common import mysql_admin  # noqa: E402

SCHEMA = REPO / "tests" / "fixtures" / "vicidial" / "schema.sql"
FINAL_NEW = ("NA", "B", "DROP", "A", "NA", "NA")
AGENT = ("SALE", "NI", "CALLBK", "NI", "DNC")
HANDLER = ("Handler_read_first", "Handler_read_key", "Handler_read_last", "Handler_read_next",
           "Handler_read_prev", "Handler_read_rnd", "Handler_read_rnd_next")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def connect(params: dict[str, Any]) -> Any:
    import pymysql

    return pymysql.connect(**params)


def schema_statements() -> list[str]:
    text = "\n".join(ln for ln in SCHEMA.read_text().splitlines() if not ln.lstrip().startswith("--"))
    return [s.strip() for s in text.split("\n;") if s.strip()]


def load(conn: Any, rows: int, history_h: float, rng: random.Random) -> float:
    """Bulk-load ``rows`` finished calls spread over the last ``history_h`` hours; returns seconds."""
    started = time.perf_counter()
    now = datetime.now().replace(microsecond=0)
    span = int(history_h * 3600)
    chunk = 10_000
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE vicidial_log DISABLE KEYS")
        for base in range(0, rows, chunk):
            values = []
            for n in range(base, min(rows, base + chunk)):
                at = now - timedelta(seconds=span - int(n * span / rows) + 60)
                epoch = int(at.timestamp())
                status = rng.choice(("NA", "B", "SALE", "NI", "A", "DROP"))
                values.append(f"('{epoch}.{n}',{n % 900000 + 1},1001,'TESTCAMP','{at:%Y-%m-%d %H:%M:%S}',{epoch},"
                              f"{epoch + 30},{30 if status in ('SALE', 'NI') else 0},'{status}','1',"
                              f"'555{n % 10_000_000:07d}','6666','AUTO','N','AGENTS','NONE','MAIN',1)")
            cur.execute(
                "INSERT INTO vicidial_log (uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch,"
                " length_in_sec, status, phone_code, phone_number, user, comments, processed, user_group, term_reason,"
                " alt_dial, called_count) VALUES " + ",".join(values))
        cur.execute("ALTER TABLE vicidial_log ENABLE KEYS")
        cur.execute("ANALYZE TABLE vicidial_log")
    return time.perf_counter() - started


def handler_reads(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
        return sum(int(v) for k, v in cur.fetchall() if k in HANDLER)


class Writer(threading.Thread):
    """Writes ``rate`` new-or-changed rows/s in ticks of 0.1 s; remembers when each final status was written."""

    def __init__(self, params: dict[str, Any], rate: int, duration: float, rng: random.Random,
                 late_s: float) -> None:
        super().__init__(daemon=True)
        self.params, self.rate, self.duration, self.rng, self.late_s = params, rate, duration, rng, late_s
        self.written: dict[str, float] = {}  # outbox key -> epoch s written
        self.pending: list[tuple[str, float]] = []  # INCALL rows (uniqueid, inserted at)
        self.rows = 0
        self.behind_s = 0.0
        self.seq = 0

    def run(self) -> None:
        conn = connect(self.params)
        tick = 0.1
        per_tick = self.rate * tick
        carry = 0.0
        start = time.monotonic()
        with conn.cursor() as cur:
            while (elapsed := time.monotonic() - start) < self.duration:
                carry += per_tick
                n, carry = int(carry), carry - int(carry)
                changes = [p for p in self.pending if time.time() - p[1] >= 5][: int(n * 0.3)]
                new = n - len(changes)
                incall = int(new * 0.3)
                now = datetime.now().replace(microsecond=0)
                values, keys = [], []
                for i in range(new):
                    self.seq += 1
                    uid = f"{int(time.time())}.{9_000_000 + self.seq}"
                    status = "INCALL" if i < incall else self.rng.choice(FINAL_NEW)
                    # The dialer logs an unanswered call when it ends, dated when it was placed.
                    at = now if status == "INCALL" else now - timedelta(seconds=self.late_s)
                    values.append(f"('{uid}',{self.seq},1001,'TESTCAMP','{at:%Y-%m-%d %H:%M:%S}',"
                                  f"{int(at.timestamp())},0,0,'{status}','1','5550000000','VDAD','AUTO','N',"
                                  "'AGENTS','NONE','MAIN',1)")
                    keys.append((uid, status))
                if values:
                    cur.execute(
                        "INSERT INTO vicidial_log (uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch,"
                        " end_epoch, length_in_sec, status, phone_code, phone_number, user, comments, processed,"
                        " user_group, term_reason, alt_dial, called_count) VALUES " + ",".join(values))
                at = time.time()
                for uid, status in keys:
                    if status == "INCALL":
                        self.pending.append((uid, at))
                    else:
                        self.written[f"vicidial:{uid}:{status}"] = at
                if changes:
                    done = {c[0] for c in changes}
                    self.pending = [p for p in self.pending if p[0] not in done]
                    by_status: dict[str, list[str]] = {}
                    for uid, _ in changes:
                        by_status.setdefault(self.rng.choice(AGENT), []).append(uid)
                    for status, uids in by_status.items():
                        cur.execute("UPDATE vicidial_log SET status=%s, user='6666', length_in_sec=42 "
                                    "WHERE uniqueid IN %s", (status, uids))
                        at = time.time()
                        for uid in uids:
                            self.written[f"vicidial:{uid}:{status}"] = at
                self.rows += n
                target = start + (int(elapsed / tick) + 1) * tick
                pause = target - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    self.behind_s = max(self.behind_s, -pause)
        conn.close()


def time_query(conn: Any, sql: str, args: Any, repeat: int) -> tuple[float, float, int]:
    """Median ms, rows examined per execution (Handler_read_*), rows returned."""
    times, examined, returned = [], [], 0
    with conn.cursor() as cur:
        for _ in range(repeat):
            h0 = handler_reads(conn)
            t0 = time.perf_counter()
            cur.execute(sql, args)
            returned = len(cur.fetchall())
            times.append((time.perf_counter() - t0) * 1000)
            examined.append(handler_reads(conn) - h0)
    first = handler_reads(conn)
    overhead = handler_reads(conn) - first  # what one SHOW STATUS adds itself
    return statistics.median(times), statistics.median(examined) - overhead, returned


async def run(args: argparse.Namespace) -> None:
    from sqlalchemy.engine import make_url

    from telephonyd.config import OutboxConfig, VICIdialConfig
    from telephonyd.outbox import Outbox, metadata as outbox_metadata
    from telephonyd.store import Store
    from telephonyd.vicidial import VICIdialSource, metadata as vicidial_metadata
    from telephonyd.vicidial.reader import VICIdialReader

    rng = random.Random(7)
    name = "td_bench_" + uuid.uuid4().hex[:10]
    server = make_url(args.url)
    mysql_admin(args.url, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    params = {"host": server.host, "port": server.port or 3306, "user": server.username,
              "password": server.password or "", "database": name, "autocommit": True}
    url = server.set(database=name).render_as_string(hide_password=False)
    tmp = tempfile.TemporaryDirectory()
    try:
        conn = connect(params)
        with conn.cursor() as cur:
            for stmt in schema_statements():
                cur.execute(stmt)
        took = load(conn, args.rows, args.history_h, rng)
        print(f"loaded {args.rows:,} vicidial_log rows over {args.history_h} h in {took:.1f} s "
              f"({args.rows / took:,.0f} rows/s)")
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM vicidial_log WHERE call_date >= NOW() - INTERVAL 2 HOUR")
            print(f"rows inside the 2 h re-read window at start: {cur.fetchone()[0]:,}")

        store = Store(f"sqlite+aiosqlite:///{tmp.name}/telephonyd.db", schemas=[outbox_metadata, vicidial_metadata])
        await store.start()
        outbox = Outbox(store, node_id="bench", config=OutboxConfig())
        await outbox.start()
        reader = VICIdialReader(url, pool_size=1)  # one connection: its session status is the source's
        config = VICIdialConfig(enabled=True, url=url, poll_interval_s=args.poll_interval_s,
                                batch_size=args.batch_size)
        source = VICIdialSource(config, store, outbox, target="did_optimizer", node_id="bench", reader=reader)
        await source.start()
        # Catch up the re-read window first (the first start of a source on a busy dialer).
        t0 = time.perf_counter()
        while await source.poll_once():
            pass
        catch_up = time.perf_counter() - t0
        print(f"initial catch-up of the window: {catch_up:.1f} s, {source.polls} polls, "
              f"{source.table_state['vicidial_log'].get('reported', 0):,} statuses queued")

        async def session_reads() -> int:
            async with reader._engine.connect() as c:  # noqa: SLF001 - the pool's only connection
                import sqlalchemy as sa

                rows = (await c.execute(sa.text("SHOW SESSION STATUS LIKE 'Handler_read%'"))).all()
                return sum(int(v) for k, v in rows if k in HANDLER)

        reads0, queries0, polls0 = await session_reads(), reader.queries, source.polls
        writer = Writer(params, args.rate, args.duration, rng, args.late_s)
        lag_samples: list[float] = []
        task = asyncio.get_running_loop().create_task(source.run())
        started = time.time()
        writer.start()
        poll_times: list[float] = []
        seen_polls = source.polls
        while writer.is_alive():
            await asyncio.sleep(1.0)
            lag_samples.append(source.table_state["vicidial_log"].get("lag_s", 0.0))
            if source.polls != seen_polls:
                seen_polls = source.polls
                poll_times.append(source.last_poll_s)
        # Let the last writes be read (two poll intervals at most).
        deadline = time.time() + 3 * args.poll_interval_s
        while time.time() < deadline:
            await asyncio.sleep(0.5)
        reads1 = await session_reads()
        await source.stop(10.0)
        await task
        elapsed = time.time() - started
        queries = reader.queries - queries0 - 1  # less the SHOW STATUS above
        polls = source.polls - polls0
        import sqlalchemy as sa

        async with store.connect() as c:
            created = {k: float(t) for k, t in (await c.execute(sa.text(
                "SELECT key, created_at FROM outbox WHERE key LIKE 'vicidial:%'"))).all()}
        await outbox.stop(5.0)
        await store.close()
        lags = [created[k] - t for k, t in writer.written.items() if k in created]
        missing = [k for k in writer.written if k not in created]
        examined_per_poll = (reads1 - reads0) / max(1, polls)
        print(f"\nload: {writer.rows:,} new or changed rows in {args.duration:.0f} s "
              f"({writer.rows / args.duration:,.0f} rows/s; writer fell behind by {writer.behind_s:.2f} s at most)")
        print(f"final statuses written {len(writer.written):,}, reported {len(lags):,}, missing {len(missing)}")
        print(f"write -> outbox commit: p50 {pct(lags, 50):.2f} s  p99 {pct(lags, 99):.2f} s  max {max(lags):.2f} s"
              f"  (goal p99 < 10 s; poll interval {args.poll_interval_s} s)")
        print("lag samples:", [round(x) for x in lag_samples])
        print(f"source lag behind the newest row (sampled 1/s): p50 {pct(lag_samples, 50):.0f} s  "
              f"p99 {pct(lag_samples, 99):.0f} s  max {max(lag_samples or [0]):.0f} s")
        print(f"rows found behind the head (late inserts): {source.late_rows:,}; poll duration (sampled) "
              f"p50 {pct(poll_times, 50):.2f} s max {max(poll_times or [0]):.2f} s")
        print(f"VICIdial DB: {queries} statements in {elapsed:.0f} s = {queries / elapsed:.1f} queries/s, "
              f"{polls} polls ({polls / elapsed:.2f}/s), {queries / max(1, polls):.1f} statements/poll")
        print(f"rows examined per poll (Handler_read_* of the source's connection): {examined_per_poll:,.0f}"
              f" = {examined_per_poll / max(1, writer.rows / max(1, polls)):.1f} per new or changed row")

        conn2 = connect(params)
        with conn2.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM vicidial_log WHERE call_date >= NOW() - INTERVAL 2 HOUR")
            in_window = cur.fetchone()[0]
        print(f"re-read window now holds {in_window:,} rows: one sweep pass (corrections, late inserts) takes "
              f"~{in_window / args.batch_size:.0f} polls = ~{in_window / args.batch_size / max(1e-9, polls / elapsed):.0f} s"
              " at this poll rate")
        with conn2.cursor() as cur:
            cur.execute("SELECT MAX(call_date) - INTERVAL 5 SECOND FROM vicidial_log")
            head = cur.fetchone()[0]
            cur.execute("SELECT NOW() - INTERVAL 2 HOUR")
            window = cur.fetchone()[0]
        cols = ("uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch, length_in_sec, status, "
                "phone_code, phone_number, user, comments, user_group, term_reason, called_count, alt_dial")
        head_sql = f"SELECT {cols} FROM vicidial_log WHERE call_date >= %s ORDER BY call_date LIMIT %s"
        sweep_sql = (f"SELECT {cols} FROM vicidial_log WHERE call_date >= %s AND call_date < %s "
                     "ORDER BY call_date LIMIT %s")
        cron_sql = ("SELECT * FROM vicidial_log WHERE uniqueid > %s AND call_date >= CURDATE() AND status != '' "
                    "AND length_in_sec > 0 ORDER BY uniqueid LIMIT 500")
        ms_head, ex_head, n_head = time_query(conn2, head_sql, (head, args.batch_size), 20)
        ms_sweep, ex_sweep, n_sweep = time_query(conn2, sweep_sql, (window, head, args.batch_size), 20)
        with conn2.cursor() as cur:
            cur.execute("SELECT uniqueid FROM vicidial_log WHERE call_date >= CURDATE() ORDER BY call_date LIMIT 1")
            first_today = (cur.fetchone() or ("0",))[0]
        ms_cron, ex_cron, n_cron = time_query(conn2, cron_sql, (first_today,), 5)
        print("\nper statement (median of repeats; rows examined = Handler_read_* delta):")
        print(f"  head read (new rows, {n_head} returned)      {ms_head:8.2f} ms  {ex_head:10,.0f} rows examined")
        print(f"  sweep batch ({n_sweep} returned)             {ms_sweep:8.2f} ms  {ex_sweep:10,.0f} rows examined")
        print(f"  baseline: DID Optimizer cron ({n_cron} ret.)  {ms_cron:8.2f} ms  {ex_cron:10,.0f} rows examined")
        print(f"  a whole poll of the source / the bare head read alone: {examined_per_poll / max(1, ex_head):.1f}x "
              f"rows examined")
        with conn2.cursor() as cur:
            for label, sql, a in (("head", head_sql, (head, args.batch_size)),
                                  ("sweep", sweep_sql, (window, head, args.batch_size)),
                                  ("cron", cron_sql, (first_today,))):
                cur.execute("EXPLAIN " + sql, a)
                names = [d[0] for d in cur.description]
                for row in cur.fetchall():
                    r = dict(zip(names, row, strict=True))
                    print(f"  EXPLAIN {label:<5} type={r['type']} key={r['key']} rows={r['rows']} extra={r['Extra']}")
        conn2.close()
        conn.close()
    finally:
        tmp.cleanup()
        mysql_admin(args.url, f"DROP DATABASE IF EXISTS `{name}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="mysql+aiomysql://root@127.0.0.1:3306")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--history-h", type=float, default=48.0)
    parser.add_argument("--rate", type=int, default=500, help="new or changed rows per second")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--poll-interval-s", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--late-s", type=float, default=30.0,
                        help="new rows with a final status are dated this far in the past (as the dialer does)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
