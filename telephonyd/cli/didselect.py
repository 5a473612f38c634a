"""``telephonyd did show UNIQUEID``: a call leg's DID selection and the outcome report that followed.

Reads the store directly (the daemon need not run): the ``did_selection`` row (DID, result, status,
latency, request id) and the leg's ``did_optimizer`` outbox row (state, attempts, and the report's
``phoneNumber``, ``didUsed``, ``didRequestId``, ``didSelection``). Exit 1 when neither exists.
"""

from __future__ import annotations

import json
from typing import Any

import click
import sqlalchemy as sa

from .helpers import echo_json, run_async
from ..didselect.model import Selection
from ..didselect.schema import did_selection

#: The outbox target of the outcome reports (``telephonyd.upstream.did_optimizer``).
REPORT_TARGET = "did_optimizer"
REPORT_FIELDS = ("phoneNumber", "didUsed", "didRequestId", "didSelection", "dialStatus", "campaignId")


def register(cli: click.Group) -> None:
    """Add the ``did`` command group to ``cli``."""
    cli.add_command(did)


@click.group()
def did() -> None:
    """DID selections made by the did_select AGI route."""


@did.command("show")
@click.argument("uniqueid")
@click.option("--json", "as_json", is_flag=True, help="Print the selection and the report as JSON.")
@click.pass_obj
def show(obj: Any, uniqueid: str, as_json: bool) -> None:
    """The selection of UNIQUEID (the leg's Asterisk uniqueid) and its outcome report."""
    data = run_async(_lookup(obj, uniqueid))
    if data["selection"] is None and data["report"] is None:
        raise click.ClickException(f"no DID selection and no outcome report for {uniqueid}")
    if as_json:
        echo_json(data)
        return
    click.echo(format_show(uniqueid, data))


async def _lookup(obj: Any, uniqueid: str) -> dict[str, Any]:
    from ..outbox.schema import outbox

    store = await obj.open_store()
    try:
        async with store.connect() as conn:
            row = (await conn.execute(sa.select(did_selection).where(did_selection.c.uniqueid == uniqueid))).first()
            report = (await conn.execute(
                sa.select(outbox.c.id, outbox.c.state, outbox.c.attempts, outbox.c.last_status, outbox.c.payload)
                .where(outbox.c.target == REPORT_TARGET, outbox.c.key == uniqueid)
            )).first()  # fmt: skip
    finally:
        await store.close()
    selection = None if row is None else Selection.from_row(row).row()
    out_report = None
    if report is not None:
        try:
            payload = json.loads(report.payload)
        except ValueError:
            payload = {}
        out_report = {
            "outbox_id": report.id, "state": report.state, "attempts": report.attempts,
            "last_status": report.last_status, **{k: payload.get(k) for k in REPORT_FIELDS},
        }  # fmt: skip
    return {"uniqueid": uniqueid, "selection": selection, "report": out_report}


def format_show(uniqueid: str, data: dict[str, Any]) -> str:
    lines = [f"uniqueid {uniqueid}"]
    sel = data["selection"]
    if sel is None:
        lines.append("selection: none recorded")
    else:
        lines.append(
            f"selection: {sel['result']} status={sel['status']} did={sel['did'] or '-'} "
            f"fallback={'YES' if sel['fallback'] else 'NO'} latency={sel['latency_ms']:.1f} ms "
            f"request_id={sel['request_id']} campaign={sel['campaign'] or '-'} area_code={sel['area_code'] or '-'}"
            + (f" reason={sel['reason']} ({sel['detail']})" if sel["reason"] else "")
        )
    rep = data["report"]
    if rep is None:
        lines.append("report: none queued")
    else:
        lines.append(
            f"report: outbox #{rep['outbox_id']} {rep['state']} attempts={rep['attempts']} "
            f"phoneNumber={rep['phoneNumber']} didUsed={rep['didUsed']} didRequestId={rep['didRequestId']} "
            f"didSelection={rep['didSelection']} dialStatus={rep['dialStatus']}"
        )
    return "\n".join(lines)
