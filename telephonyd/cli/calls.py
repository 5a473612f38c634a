"""``telephonyd calls ...`` and ``telephonyd webhooks ...``: call records and webhook deliveries.

Both read the store directly (the daemon need not run). Webhook deliveries are outbox rows of the
targets ``webhook:<name>``; ``webhooks retry`` makes dead (or backing-off) rows due again, and a
running daemon picks them up at its next poll.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from .helpers import echo_json, run_async, utc_time
from ..outbox.schema import outbox as outbox_table
from ..calls.records import list_records, show_record

T = TypeVar("T")

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(cli: click.Group) -> None:
    cli.add_command(calls)
    cli.add_command(webhooks)


def parse_since(text: str) -> float:
    """Seconds in ``30m``, ``1h``, ``2d``, ``90`` (s); `click.BadParameter` otherwise."""
    match = _SINCE.match(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r}: expected a duration such as 30m, 1h, 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _with_store(obj: Any, action: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        store = await obj.open_store()
        try:
            return await action(store)
        finally:
            await store.close()

    return run_async(go())


# -- calls ---------------------------------------------------------------------------------------


@click.group()
def calls() -> None:
    """Call records: one per finished call tracked from AMI (``calls.enabled``)."""


@calls.command("list")
@click.option("--since", "since", default="1h", show_default=True, help="Calls ended within this long (30m, 1h, 2d).")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_calls(obj: Any, since: str, limit: int, as_json: bool) -> None:
    """Finished calls, newest first."""
    window = parse_since(since)
    rows = _with_store(obj, lambda store: list_records(store, since=time.time() - window, limit=limit))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no calls")
        return
    click.echo(f"{'ended (UTC)':<19} {'linkedid':<22} {'dir':<8} {'caller':<14} {'dialed':<16} "
               f"{'agent':<10} {'status':<11} {'cause':>5} by")
    for r in rows:
        click.echo(f"{utc_time(r['ended_at']):<19} {r['linkedid']:<22.22} {r['direction']:<8} {r['caller']:<14.14} "
                   f"{r['dialed_number']:<16.16} {r['agent_endpoint']:<10.10} {r['dial_status'] or '-':<11} "
                   f"{'-' if r['hangup_cause'] is None else r['hangup_cause']:>5} {r['hung_up_by'] or '-'}")


@calls.command("show")
@click.argument("key", metavar="UNIQUEID|LINKEDID")
@click.pass_obj
def show_call(obj: Any, key: str) -> None:
    """One call's record (JSON), with the call_log outcome and the VICIdial dispositions reported for it."""
    target = "did_optimizer"
    found = _with_store(obj, lambda store: show_record(store, key, call_log_target=target))
    if found is None:
        raise click.ClickException(f"no call record for {key}")
    echo_json(found)


# -- webhooks ------------------------------------------------------------------------------------


@click.group()
def webhooks() -> None:
    """Webhook subscriptions (``calls.webhooks``) and their deliveries (outbox rows)."""


async def _counts(store: Any) -> dict[str, dict[str, int]]:
    t = outbox_table
    query = (sa.select(t.c.target, t.c.state, sa.func.count()).where(t.c.target.like("webhook:%"))
             .group_by(t.c.target, t.c.state))
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
    out: dict[str, dict[str, int]] = {}
    for target, state, count in rows:
        out.setdefault(target, {})[state] = count
    return out


@webhooks.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_webhooks(obj: Any, as_json: bool) -> None:
    """Configured webhooks (secrets masked) with their delivery counts by state."""
    counts = _with_store(obj, _counts)
    items = []
    for w in obj.config.calls.webhooks:
        items.append({"name": w.name, "target": w.target, "url": w.url, "enabled": w.enabled,
                      "signed": w.secret is not None, "events": w.events or ["*"], "contexts": w.contexts,
                      "campaigns": w.campaigns, "endpoints": w.endpoints, "deliveries": counts.get(w.target, {})})
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("no webhooks configured")
    for item in items:
        states = "  ".join(f"{k} {v}" for k, v in sorted(item["deliveries"].items())) or "no deliveries"
        click.echo(f"{item['name']}: {item['url']} events {','.join(item['events'])} "
                   f"{'signed' if item['signed'] else 'UNSIGNED'}{'' if item['enabled'] else ' (disabled)'}; {states}")


@webhooks.command("deliveries")
@click.option("--name", default=None, help="Only this webhook.")
@click.option("--state", type=click.Choice(["pending", "in_flight", "delivered", "dead"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def deliveries(obj: Any, name: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """Webhook deliveries, newest first: event id, state, attempts, last HTTP status and error."""
    t = outbox_table

    async def query(store: Any) -> list[dict[str, Any]]:
        q = sa.select(t.c.id, t.c.target, t.c.key, t.c.state, t.c.attempts, t.c.last_status, t.c.last_error,
                      t.c.created_at, t.c.delivered_at, t.c.next_attempt_at)
        q = q.where(t.c.target == f"webhook:{name}") if name else q.where(t.c.target.like("webhook:%"))
        if state:
            q = q.where(t.c.state == state)
        async with store.connect() as conn:
            rows = (await conn.execute(q.order_by(t.c.id.desc()).limit(limit))).all()
        return [dict(row._mapping) for row in rows]

    rows = _with_store(obj, query)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no deliveries")
        return
    for r in rows:
        click.echo(f"{r['id']:>8} {r['target'][8:]:<12.12} {r['key']:<44.44} {r['state']:<9} {r['attempts']:>3} "
                   f"{r['last_status'] or '-':>4} {utc_time(r['delivered_at'] or r['next_attempt_at'])} "
                   f"{(r['last_error'] or '')[:60]}")


@webhooks.command("retry")
@click.argument("row_id", metavar="ID", type=int, required=False)
@click.option("--all-dead", is_flag=True, help="Every dead webhook delivery (of --name, else of all webhooks).")
@click.option("--name", default=None)
@click.pass_obj
def retry(obj: Any, row_id: int | None, all_dead: bool, name: str | None) -> None:
    """Make webhook delivery ID (or every dead one) due again with a fresh attempt count."""
    if (row_id is None) == (not all_dead):
        raise click.UsageError("give either a delivery ID or --all-dead")
    t = outbox_table

    async def go(store: Any) -> int:
        where = [t.c.target == f"webhook:{name}"] if name else [t.c.target.like("webhook:%")]
        if row_id is not None:
            where += [t.c.id == row_id, t.c.state.in_(("dead", "pending"))]
        else:
            where.append(t.c.state == "dead")
        now = store.now_expr()
        stmt = t.update().where(*where).values(state="pending", attempts=0, next_attempt_at=now, updated_at=now)

        def work(conn: sa.Connection) -> int:
            return conn.execute(stmt).rowcount

        return await store.write(work)

    count = _with_store(obj, go)
    if row_id is not None and not count:
        raise click.ClickException(f"no dead or pending webhook delivery {row_id}")
    click.echo(json.dumps({"retried": count}))
