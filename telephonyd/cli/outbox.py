"""``telephonyd outbox ...``: look at the delivery queue and repair dead letters.

Works on the store directly (the daemon need not run); a running daemon notices retried rows at
its next poll (``outbox.poll_interval_s``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .helpers import echo, echo_json, run_async, utc_time
from ..outbox.model import STATES
from ..outbox.service import Outbox

T = TypeVar("T")


def register(cli: click.Group) -> None:
    """Add the ``outbox`` command group to ``cli``."""
    cli.add_command(outbox)


@click.group()
def outbox() -> None:
    """Inspect the outbox (rows waiting for or done with upstream delivery) and repair dead letters."""


@outbox.command()
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def stats(obj: Any, as_json: bool) -> None:
    """Rows by state and target, oldest pending age, dead letters, in-flight claims by node."""
    data = _with_outbox(obj, lambda ob: ob.stats())
    if as_json:
        echo_json(data)
        return
    for state in STATES:
        echo(f"{state:<10} {data['by_state'].get(state, 0):>9}")
    age = data["oldest_pending_age_s"]
    echo(f"oldest pending: {'-' if age is None else f'{age:.1f} s'}")
    for target, counts in sorted(data["targets"].items()):
        echo(f"target {target}: " + "  ".join(f"{s} {counts.get(s, 0)}" for s in STATES))
    for line in claim_lines(data):
        echo(line)


def claim_lines(stats: dict[str, Any]) -> list[str]:
    """Who holds which in-flight rows, and the stuck ones, from `Outbox.stats` (also used by
    ``telephonyd status``)."""
    lines = []
    for claim in stats.get("claims") or []:
        ids = claim.get("ids") or []
        more = claim["rows"] - len(ids)
        shown = ", ".join(map(str, ids)) + (f" and {more} more" if more > 0 else "")
        line = (f"claims of {claim['node_id'] or '?'}: {claim['rows']} rows in flight (ids {shown}), leases end in "
                f"{claim['lease_expires_in_s']:.1f}..{claim['last_lease_expires_in_s']:.1f} s")
        if claim.get("stuck"):
            line += f"; STUCK: {claim['stuck']} past their lease by up to {-claim['lease_expires_in_s']:.1f} s"
        lines.append(line)
    if stats.get("stuck_leases"):
        lines.append(f"stuck leases: {stats['stuck_leases']} in-flight rows past their lease; their node died or "
                     "stalled, and any running instance returns them to pending at its next poll")
    return lines


@outbox.command("list")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only rows in this state.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows (with payloads) as JSON.")
@click.pass_obj
def list_rows(obj: Any, state: str | None, limit: int, as_json: bool) -> None:
    """Rows, oldest first: state, attempts, the node that claimed them last (the one holding an
    in-flight row, until its lease ends), the last error."""
    rows = _with_outbox(obj, lambda ob: ob.list_rows(state=state, limit=limit))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        echo("no rows")
        return
    echo(f"{'id':>8} {'target':<14} {'key':<24} {'state':<9} {'tries':>5} {'status':>6} {'claimed_by':<12} "
               f"{'due / lease end (UTC)':<21} last error")
    for row in rows:
        echo(
            f"{row['id']:>8} {row['target']:<14.14} {row['key']:<24.24} {row['state']:<9} {row['attempts']:>5} "
            f"{row['last_status'] or '-':>6} {row['claimed_by'] or '-':<12.12} {_when(row):<21} "
            f"{(row['last_error'] or '')[:80]}"
        )


@outbox.command()
@click.argument("row_id", metavar="ID", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Retry every dead letter.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def retry(obj: Any, row_id: int | None, all_dead: bool, as_json: bool) -> None:
    """Make dead row ID (or, with --all-dead, every dead row) due again with a fresh attempt count."""
    if (row_id is None) == (not all_dead):
        raise click.UsageError("give either a row ID or --all-dead")
    if all_dead:
        count = _with_outbox(obj, lambda ob: ob.retry_all_dead())
        _report(as_json, {"retried": count}, f"{count} dead rows are due again")
        return
    assert row_id is not None
    done = _with_outbox(obj, lambda ob: ob.retry(row_id))
    if not done:
        _fail(as_json, f"no dead or pending row {row_id}")
    _report(as_json, {"retried": 1, "id": row_id}, f"row {row_id} is due again")


@outbox.command()
@click.argument("row_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def drop(obj: Any, row_id: int, as_json: bool) -> None:
    """Delete row ID for good (it will never be delivered)."""
    if not _with_outbox(obj, lambda ob: ob.drop(row_id)):
        _fail(as_json, f"no row {row_id}")
    _report(as_json, {"dropped": 1, "id": row_id}, f"row {row_id} dropped")


def _with_outbox(obj: Any, action: Callable[[Outbox], Awaitable[T]]) -> T:
    async def go() -> T:
        store = await obj.open_store()
        try:
            return await action(Outbox(store, node_id=obj.config.node_id, config=obj.config.outbox))
        finally:
            await store.close()

    return run_async(go())


def _report(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        echo_json({"success": True, **data})
    else:
        echo(text)


def _fail(as_json: bool, message: str) -> None:
    if as_json:
        echo_json({"success": False, "error": message})
        click.get_current_context().exit(1)
    raise click.ClickException(message)


def _when(row: dict[str, Any]) -> str:
    """A pending row's next attempt, or an in-flight row's lease end (both database clock)."""
    if row["state"] == "pending":
        return utc_time(row["next_attempt_at"])
    if row["state"] == "in_flight" and row["lease_until"] is not None:
        return "lease until " + utc_time(row["lease_until"])[11:]
    return "-"
