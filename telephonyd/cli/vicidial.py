"""CLI: ``telephonyd vicidial status [--json]``.

From the running daemon's ``/status`` (``components.vicidial``: checkpoint, lag, rows read, re-read
window, last error). When the daemon is not reachable, from the store's checkpoint and VICIdial's
database directly (no ``last_error`` then: it lives in the daemon).
"""

from __future__ import annotations

from typing import Any

import click

from ..vicidial.payload import CLOSER_LOG, LOG


def format_status(health: dict[str, Any]) -> str:
    lines = [
        f"vicidial source: {health.get('state', '?')}  polls={health.get('polls', 0)}  "
        f"re-read window={health.get('reread_window_s')}s  poll interval={health.get('poll_interval_s')}s"
        + (f"  [{health['origin']}]" if health.get("origin") else "")
    ]
    for table, state in (health.get("tables") or {}).items():
        lines.append(
            f"  {table:<20} checkpoint={state.get('head_date')}"
            + (f" #{state['head_key']}" if state.get("head_key") else "")
            + f"  newest={state.get('newest')}  lag={state.get('lag_s')}s  rows_read={state.get('rows_read')}"
            f"  reported={state.get('reported')}  open={state.get('open_calls')}  sweep={state.get('sweep_date')}"
        )
    lines.append(f"  last error: {health.get('last_error') or 'none'}")
    return "\n".join(lines)


async def direct_status(config: Any) -> dict[str, Any]:
    """The checkpoint from the store and the newest rows from VICIdial (read-only)."""
    from ..app import build_store
    from ..vicidial import ledger
    from ..vicidial.payload import date_text
    from ..vicidial.reader import VICIdialReader
    from ..vicidial.source import parse_date

    if config.vicidial.url is None:
        raise click.ClickException("vicidial.url is not configured")
    store = build_store(config)
    await store.start()
    reader = VICIdialReader(config.vicidial.url.get_secret_value(), query_timeout_s=config.vicidial.query_timeout_s)
    await reader.start()
    tables: dict[str, Any] = {}
    try:
        for table in [LOG] + ([CLOSER_LOG] if config.vicidial.closer_log else []):
            async with store.connect() as conn:
                cp = await conn.run_sync(lambda c, t=table: ledger.load_checkpoint(c, t))
            newest, _top = await reader.newest(table)
            if cp is None:
                tables[table] = {"head_date": None, "newest": date_text(newest) if newest else None}
                continue
            lag = max(0.0, (newest - parse_date(cp.head_date)).total_seconds()) if newest else 0.0
            tables[table] = {"head_date": cp.head_date, "head_key": cp.head_key, "sweep_date": cp.sweep_date,
                             "newest": date_text(newest) if newest else None, "lag_s": lag,
                             "rows_read": cp.rows_read, "reported": cp.reported, "node_id": cp.node_id}
    finally:
        await reader.close()
        await store.close()
    return {"state": "not running", "origin": "store", "reread_window_s": config.vicidial.reread_window_s,
            "poll_interval_s": config.vicidial.poll_interval_s, "tables": tables, "last_error": None}


def register(cli: click.Group) -> None:
    """Add the ``vicidial`` group to the ``telephonyd`` command group."""

    @cli.group("vicidial")
    def vicidial() -> None:
        """The VICIdial source (dispositions from vicidial_log / vicidial_closer_log)."""

    @vicidial.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
    @click.pass_obj
    def status(obj: Any, as_json: bool) -> None:
        """Checkpoint, lag behind VICIdial's newest row, rows read, re-read window, last error."""
        from .helpers import echo_json, run_async

        if not obj.config.vicidial.enabled:
            raise click.ClickException("the VICIdial source is not enabled (vicidial.enabled)")
        health: dict[str, Any] | None = None
        try:
            code, data = run_async(obj.api("GET", "/status", timeout_s=10.0))
            if code == 200 and isinstance(data, dict):
                health = (data.get("components") or {}).get("vicidial")
                if health is not None:
                    health = {**health, "origin": "daemon"}
        except click.ClickException:
            health = None
        if health is None:
            health = run_async(direct_status(obj.config))
        if as_json:
            echo_json(health)
        else:
            click.echo(format_status(health))
