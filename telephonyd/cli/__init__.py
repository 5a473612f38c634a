"""The ``telephonyd`` command line.

``telephonyd run -c PATH`` runs the daemon; the other commands read the store directly (``outbox``,
``db upgrade|check|recover``, ``requests``; they never create a store) or call the running daemon's
HTTP API (``status``, ``agents``, ``refresh``). Every command takes ``-c/--config PATH`` (else
``$TELEPHONYD_CONFIG``, else ``/etc/telephonyd/telephonyd.yml`` when it exists, else the built-in
defaults). Everything printed goes through `echo` (control characters shown escaped).

Exit codes: 0 success, 1 failure, 2 usage, 78 configuration error (EX_CONFIG) or, for ``run``, a
store that cannot be used (damaged, emptied, unwritable directory, refused login).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from . import ameyo, calls, diagnostics, didselect, outbox, presence, store, vicidial
from .helpers import DEFAULT_CONFIG, CLIContext, EscapingStream, echo, echo_json, printable, run_async
from .outbox import claim_lines

__all__ = ["DEFAULT_CONFIG", "CLIContext", "build_cli", "cli", "echo", "echo_json", "format_status", "main",
           "printable", "run_async"]

#: The edges' command modules: each adds its commands with ``register(group)``.
COMMAND_MODULES = (store, outbox, presence, ameyo, vicidial, calls, didselect, diagnostics)  # diagnostics after outbox: it adds `outbox why`


def _set_config_path(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(CLIContext).config_path = value


def _config_option() -> click.Option:
    return click.Option(
        ["-c", "--config"],
        # A plain string: load_config reports a missing or unreadable file as a configuration
        # error (exit 78, path and reason), the same as through $TELEPHONYD_CONFIG.
        type=str,
        metavar="PATH",
        help="Configuration file (default: $TELEPHONYD_CONFIG, then /etc/telephonyd/telephonyd.yml).",
        callback=_set_config_path,
        expose_value=False,
        is_eager=True,
    )


@click.group()
@click.version_option(package_name="telephonyd")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """telephonyd: FastAGI outcomes, AMI presence and dialer callbacks, with a durable outbox."""
    ctx.ensure_object(CLIContext)


@cli.command()
@click.pass_obj
def run(obj: CLIContext) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    from ..app import App
    from ..logs import configure_logging

    config = obj.config
    configure_logging(config.logging.level, config.logging.format, config.secrets())
    code = asyncio.run(App(config, config_path=obj.resolved_path).run())
    sys.exit(code)


@cli.command("check-config")
@click.pass_obj
def check_config(obj: CLIContext) -> None:
    """Validate the configuration and print the effective config with secrets masked."""
    import yaml

    echo(yaml.safe_dump(obj.config.masked(), sort_keys=False), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status document.")
@click.pass_obj
def status(obj: CLIContext, as_json: bool) -> None:
    """Show the running daemon's status (GET /status)."""
    code, data = run_async(obj.api("GET", "/status"))
    if code != 200 or not isinstance(data, dict):
        raise click.ClickException(f"/status answered {code}: {data}")
    if as_json:
        echo_json(data)
        return
    echo(format_status(data))


def format_status(data: dict[str, Any]) -> str:
    lines = [f"node {data.get('node_id')}  version {data.get('version')}  uptime {data.get('uptime_s', 0):.0f}s  "
             f"{'OK' if data.get('ok') else 'DEGRADED'}"]
    for name, health in (data.get("components") or {}).items():
        mark = "ok " if health.get("ok") else "BAD"
        detail = ", ".join(f"{k}={v}" for k, v in health.items() if k not in ("ok", "state") and not isinstance(v, (dict, list)))
        lines.append(f"  [{mark}] {name:<14} {health.get('state', '')}  {detail}")
    outbox = data.get("outbox") or {}
    if outbox:
        counts = outbox.get("by_state") or {}
        lines.append("outbox: " + "  ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                     + f"  oldest_pending_age_s={outbox.get('oldest_pending_age_s')}")
        lines.extend("  " + line for line in claim_lines(outbox))
    if data.get("last_upstream_error"):
        lines.append(f"last upstream error: {data['last_upstream_error']}")
    return "\n".join(lines)


def _register_edges(group: click.Group) -> None:
    for module in COMMAND_MODULES:
        module.register(group)


def _add_config_option(command: click.Command) -> None:
    if not any(isinstance(p, click.Option) and "--config" in p.opts for p in command.params):
        command.params.insert(0, _config_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_config_option(sub)


def build_cli() -> click.Group:
    _register_edges(cli)
    _add_config_option(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Errors are printed here (through `printable`) rather than by click, whose
    messages may quote what a peer sent."""
    try:
        code = build_cli().main(args=argv, prog_name="telephonyd", obj=CLIContext(), standalone_mode=False)
    except click.exceptions.Abort:
        echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show(file=EscapingStream(sys.stderr))  # type: ignore[arg-type]
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

