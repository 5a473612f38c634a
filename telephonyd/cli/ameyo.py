"""``telephonyd requests``: the Ameyo callback request log, read from the store directly.

    telephonyd requests [--request-id ID] [--call-id ID] [--since 1h] [--limit 50] [--json]

Without ``--request-id``: one line per callback, newest first (time in ``ameyo.timezone``). With it:
everything kept about that callback (query, decision, payload, TopS.II reply).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from ..ameyo import requestlog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``1h``, ``2d``; raises `click.BadParameter`."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 1h or 2d")
    return float(match[1]) * _UNIT_S[match[2]]


def register(cli: click.Group) -> None:
    """Add ``requests`` to ``cli``."""
    cli.add_command(requests)


@click.command()
@click.option("--request-id", help="One callback, in full.")
@click.option("--call-id", help="Callbacks of one callId (unique_id).")
@click.option("--since", "since", help="Only the last DURATION (90s, 15m, 1h, 2d).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_obj
def requests(obj: Any, request_id: str | None, call_id: str | None, since: str | None, limit: int,
             as_json: bool) -> None:
    """Ameyo callbacks received: decision, TopS.II request and reply, outcome."""
    from .helpers import echo, echo_json, run_async

    since_s = parse_since(since) if since else None

    async def read() -> list[dict[str, Any]]:
        store = await obj.open_store()
        try:
            return await requestlog.query(store, request_id=request_id, call_id=call_id, since_s=since_s, limit=limit)
        finally:
            await store.close()

    rows = run_async(read())
    if as_json:
        echo_json(rows)
        return
    zone = ZoneInfo(obj.config.ameyo.timezone)
    if not rows:
        echo("no requests")
        return
    if request_id:
        echo(format_detail(rows[0], zone))
        return
    echo(f"{'time':<19} {'request_id':<16} {'channel':<10} {'flow':<17} {'call_id':<12} {'outcome':<14} "
               f"{'http':>4} {'tops':>4} note")
    for row in rows:
        echo(format_line(row, zone))


def _time(epoch: float | None, zone: ZoneInfo) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def format_line(row: dict[str, Any], zone: ZoneInfo) -> str:
    decision = row.get("decision") if isinstance(row.get("decision"), dict) else {}
    note = row.get("error") or row.get("upstream_error") or decision.get("skip") or ""
    if not note and row.get("api"):
        note = row["api"]
    return (f"{_time(row['created_at'], zone):<19} {row['request_id']:<16} {row['channel']:<10} "
            f"{row.get('flow') or '-':<17.17} {row.get('call_id') or '-':<12.12} {row['outcome']:<14} "
            f"{row['http_status'] or '-':>4} {row.get('upstream_status') or '-':>4} {str(note)[:70]}")


def format_detail(row: dict[str, Any], zone: ZoneInfo) -> str:
    import json

    lines = [f"request {row['request_id']}  {row['channel']}  {row.get('flow') or '-'}  outcome {row['outcome']}",
             (f"received {_time(row['created_at'], zone)}  updated {_time(row['updated_at'], zone)}  "
              f"node {row.get('node_id') or '-'}  path {row.get('path')}  answered HTTP {row['http_status'] or '-'}")]
    for name in ("query", "decision", "payload"):
        if row.get(name) is not None:
            lines.append(f"{name}: {json.dumps(row[name], ensure_ascii=False, sort_keys=True)}")
    if row.get("error"):
        lines.append(f"error: {row['error']} (field {row.get('error_field')})")
    if row.get("api"):
        lines.append(f"TopS.II {row['api']}  outbox key {row.get('outbox_key')}  attempts {row.get('attempts')}")
    if row.get("upstream_status") is not None or row.get("upstream_error"):
        lines.append(f"reply: HTTP {row.get('upstream_status') or '-'} {row.get('upstream_error') or ''}".rstrip())
    if row.get("upstream_body"):
        lines.append(f"reply body: {row['upstream_body'][:2000]}")
    if row.get("related_request_id"):
        lines.append(f"related request: {row['related_request_id']}")
    return "\n".join(lines)
