"""CLI: ``telephonyd test-outcome``, ``capture``, ``replay`` and ``telephonyd outbox why ID`` (the logic in `telephonyd.diagnostics`)."""

from __future__ import annotations

import json
import time
from typing import Any

import click
import sqlalchemy as sa

from ..diagnostics import why
from .helpers import echo, run_async


def register(cli: click.Group) -> None:
    """Add ``test-outcome`` to ``cli`` and ``why`` to its ``outbox`` group (when that exists)."""
    cli.add_command(test_outcome)
    cli.add_command(capture)
    cli.add_command(replay)
    cli.add_command(sink)
    group = cli.commands.get("outbox")
    if isinstance(group, click.Group):
        group.add_command(outbox_why)


async def _read_row(store: Any, where: Any) -> dict[str, Any] | None:
    from ..outbox.schema import outbox as t

    async with store.connect() as conn:
        record = (await conn.execute(sa.select(t).where(where))).mappings().first()
        now = await store.now(conn)
    if record is None:
        return None
    row = {k: v for k, v in record.items() if k not in ("log_context", "enqueue_batch")}
    row["payload"] = json.loads(record["payload"])
    row["db_now"] = now
    return row


@click.command("why")
@click.argument("row_id", metavar="ID", type=int)
@click.pass_obj
def outbox_why(obj: Any, row_id: int) -> None:
    """Why row ID is where it is: target disabled, backing off until when, claimed by whom, last error."""
    from ..outbox.schema import outbox as t

    async def go() -> dict[str, Any] | None:
        store = await obj.open_store()
        try:
            return await _read_row(store, t.c.id == row_id)
        finally:
            await store.close()

    row = run_async(go())
    if row is None:
        raise click.ClickException(f"no row {row_id}")
    for line in why.explain(row, row["db_now"], why.enabled_targets(obj.config)):
        echo(line)


@click.command("test-outcome")
@click.option("--timeout", "timeout_s", type=float, default=15.0, show_default=True,
              help="Seconds to follow the outcome through the outbox.")
@click.option("--number", default="15555550100", show_default=True, help="The dialed number of the synthetic call.")
@click.option("--verbose", is_flag=True, help="Print every AGI command and reply.")
@click.pass_obj
def test_outcome(obj: Any, timeout_s: float, number: str, verbose: bool) -> None:
    """Send one synthetic call (FastAGI call_log start and h stages, ANSWER/16, campaign TESTOUTCOME)
    to the running daemon and follow its outcome to the outbox and the DID Optimizer's answer."""
    from ..outbox.schema import outbox as t
    from ..upstream.did_optimizer import DID_OPTIMIZER_TARGET
    from ..diagnostics.testoutcome import SyntheticChannel, follow, synthetic_uniqueid

    config = obj.config
    listen = config.fastagi.listen[0]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host, listen.host)
    channel = SyntheticChannel(synthetic_uniqueid(time.time()), number=number, host=host, port=listen.port)
    targets = why.enabled_targets(config)

    async def go() -> dict[str, Any] | None:
        echo(f"call {channel.uniqueid} to agi://{host}:{listen.port}/call_log")
        for end in (False, True):
            try:
                result = await channel.session(end)
            except (OSError, TimeoutError) as exc:
                raise click.ClickException(f"FastAGI at {host}:{listen.port} not reachable ({exc}): is the daemon "
                                           "running? (`telephonyd run`)") from None
            if verbose:
                for line in channel.transcript:
                    echo("  " + line.replace("\n", "\n  "))
            channel.transcript.clear()
            echo(f"{'end (h)' if end else 'start'} stage: {result}")
        if not targets.get(DID_OPTIMIZER_TARGET):
            echo("did_optimizer.enabled is false: the outcome waits in the outbox (nothing leaves the machine)")
        store = await obj.open_store()
        try:
            where = sa.and_(t.c.target == DID_OPTIMIZER_TARGET, t.c.key == channel.uniqueid)
            return await follow(lambda: _read_row(store, where),
                                lambda row: why.explain(row, row["db_now"], targets), echo, timeout_s)
        finally:
            await store.close()

    row = run_async(go())
    if row is None or row["state"] != "delivered":
        raise click.ClickException("the outcome was not delivered" + ("" if row is None else f" (row {row['id']}, "
                                   f"`telephonyd outbox why {row['id']}`)"))
    echo(f"delivered: the DID Optimizer answered {row.get('last_status')}")


@click.command("capture")
@click.option("--ami", "kind", flag_value="ami", help="Record AMI events (a second AMI login with the ami user).")
@click.option("--agi", "kind", flag_value="agi", help="Record FastAGI sessions through a proxy on --listen.")
@click.option("--listen", default="127.0.0.1:4574", show_default=True, metavar="HOST:PORT",
              help="With --agi: where the recording proxy listens (point the dialplan's AGI() here).")
@click.argument("duration_s", metavar="DURATION", type=click.FloatRange(0.1, 86400))
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, writable=True))
@click.pass_obj
def capture(obj: Any, kind: str | None, listen: str, duration_s: float, file: str) -> None:
    """Record live AMI events or FastAGI sessions for DURATION seconds into FILE, secrets masked."""
    from pathlib import Path

    config = obj.config
    if kind is None:
        raise click.UsageError("give --ami or --agi")
    if kind == "agi":
        from ..diagnostics.agicapture import capture_agi

        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise click.UsageError("--listen must be HOST:PORT")
        first = config.fastagi.listen[0]
        upstream = ({"0.0.0.0": "127.0.0.1", "::": "::1"}.get(first.host, first.host), first.port)
        try:
            sessions, lines = run_async(capture_agi(upstream, (host.strip("[]"), int(port)), duration_s, Path(file),
                                                    echo))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
        echo(f"{sessions} sessions, {lines} lines written to {file}")
        return
    from ..diagnostics.capture import capture_ami

    if config.ami.secret is None:
        raise click.ClickException("capture --ami needs ami.secret (the daemon's AMI user) in the configuration")
    try:
        count = run_async(capture_ami(config.ami, duration_s, Path(file), echo))
    except (TimeoutError, OSError) as exc:
        raise click.ClickException(f"no AMI login at {config.ami.host}:{config.ami.port}: "
                                   f"{exc or type(exc).__name__}") from None
    echo(f"{count} events written to {file}")


@click.command("replay")
@click.argument("file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def replay(obj: Any, file: str) -> None:
    """Play an AMI capture through presence and the call tracker offline; print what would be
    published and every agent's final state."""
    from pathlib import Path

    from ..diagnostics.capture import read_capture
    from ..diagnostics.replay import replay as play

    try:
        header, events = read_capture(Path(file))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    echo(f"{len(events)} events from {header.get('host', '?')} captured at {header.get('started_at')}")
    result = run_async(play(obj.config, events, echo, float(header.get("started_at") or 0.0)))
    echo(f"{result['published']} agent messages, {result['call_events']} call events")
    for endpoint, status in sorted(result["agents"].items()):
        reason = f" ({status['reason']})" if status.get("reason") else ""
        echo(f"agent {endpoint}: {status['state']}{reason} online={'yes' if status['online'] else 'no'}")


@click.command("sink")
@click.option("--listen", default="127.0.0.1:5000", show_default=True, metavar="HOST:PORT",
              help="Where to listen (did_optimizer.base_url's default points here).")
def sink(listen: str) -> None:
    """A stand-in upstream: answer every POST {"success": true} and print it (until Ctrl-C)."""
    from aiohttp import web

    from ..diagnostics.sink import sink_app

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.UsageError("--listen must be HOST:PORT")
    echo(f"telephonyd sink listening on http://{listen}/ (Ctrl-C stops it)")
    web.run_app(sink_app(echo), host=host.strip("[]"), port=int(port), print=None, access_log=None)
