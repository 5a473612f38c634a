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
import importlib
import json
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import click

from .config import Config, load_config
from .errors import ConfigError, TelephonydError

T = TypeVar("T")

DEFAULT_CONFIG = Path("/etc/telephonyd/telephonyd.yml")

#: Edge modules that add commands with ``register(cli)``; missing ones are skipped.
COMMAND_MODULES = (
    "telephonyd.store.commands",
    "telephonyd.outbox.commands",
    "telephonyd.presence.commands",
    "telephonyd.ameyo.commands",
    "telephonyd.vicidial.commands",
    "telephonyd.calls.commands",
    "telephonyd.didselect.commands",
    "telephonyd.diagnostics.commands",  # operator's view: test-outcome, outbox why (after outbox)
)


class CLIContext:
    """What every command gets as ``ctx.obj``: the config (loaded lazily), store and API access."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self._config: Config | None = None

    @property
    def resolved_path(self) -> str | None:
        if self.config_path:
            return self.config_path
        if os.environ.get("TELEPHONYD_CONFIG"):
            return os.environ["TELEPHONYD_CONFIG"]
        return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.resolved_path)
            except ConfigError as exc:
                echo(f"telephonyd: configuration error: {exc}", err=True)
                sys.exit(ConfigError.exit_code)
        return self._config

    async def open_store(self) -> Any:
        """A started `Store` on ``store.url`` with every schema; close it with ``await store.close()``.

        Never creates a store: a missing one raises `StoreMissing` (reported, exit 1), a damaged
        one `StoreDamaged`.
        """
        from .app import build_store

        store = build_store(self.config, create=False)
        await store.start()
        return store

    def api_base(self) -> str:
        listen = self.config.http.listen
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host, listen.host)
        return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"

    async def api(self, method: str, path: str, json_body: Any = None, timeout_s: float = 30.0) -> tuple[int, Any]:
        """Call the running daemon's HTTP API with the admin token; returns (status, parsed JSON or text).

        Raises `click.ClickException` when the daemon is not reachable.
        """
        import aiohttp

        headers = {}
        if self.config.http.admin_token is not None:
            headers["Authorization"] = f"Bearer {self.config.http.admin_token.get_secret_value()}"
        url = self.api_base() + path
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
                async with session.request(method, url, json=json_body, headers=headers) as resp:
                    text = await resp.text()
                    try:
                        return resp.status, json.loads(text)
                    except ValueError:
                        return resp.status, text
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise click.ClickException(f"the daemon is not reachable at {self.api_base()}: {exc}") from None


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine for a command, turning telephonyd errors into a clean message and exit 1."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ConfigError as exc:
        echo(f"telephonyd: configuration error: {exc}", err=True)
        sys.exit(ConfigError.exit_code)
    except TelephonydError as exc:
        raise click.ClickException(str(exc)) from None


def printable(text: str) -> str:
    """``text`` with every control character shown escaped (``\\x1b``, ``\\r``, ``\\u202e``), so
    a uniqueid, a callback's field or an error message cannot drive the operator's terminal.
    Newlines stay (they separate the lines of the output); C0/C1 controls, DEL, bidi overrides and
    Unicode line separators are escaped."""
    if text.isprintable() or all(ch == "\n" or ch.isprintable() for ch in text):
        return text
    return "".join(ch if ch == "\n" or ch.isprintable() or ch == " " else _escape(ch) for ch in text)


_NAMED_ESCAPES = {"\t": "\\t", "\r": "\\r"}


def _escape(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _EscapingStream:
    """A text stream that writes through `printable` (for click's own error output)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable(text))

    def flush(self) -> None:
        self._stream.flush()


def echo(text: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """Write one piece of CLI output (stdout, or stderr with ``err``) through `printable`: every
    command prints with this, never with ``click.echo`` directly."""
    click.echo(printable(str(text)), err=err, nl=nl)


def echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=True, default=str))


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
    from .app import App
    from .logs import configure_logging

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
        from .outbox.commands import claim_lines

        lines.extend("  " + line for line in claim_lines(outbox))
    if data.get("last_upstream_error"):
        lines.append(f"last upstream error: {data['last_upstream_error']}")
    return "\n".join(lines)


def _register_edges(group: click.Group) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
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
        exc.show(file=_EscapingStream(sys.stderr))  # type: ignore[arg-type]
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

