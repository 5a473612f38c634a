"""What every CLI command shares: the lazily loaded config, store and daemon API access
(`CLIContext`), `run_async`, and `echo` / `echo_json` (all output through `printable`).

Only this package imports click; the commands of each edge live beside this module
(``telephonyd/cli/<edge>.py``) and import the edges, never the other way round.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import Config, load_config
from ..errors import ConfigError, TelephonydError

T = TypeVar("T")

DEFAULT_CONFIG = Path("/etc/telephonyd/telephonyd.yml")

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
        from ..app import build_store

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


class EscapingStream:
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


def utc_time(epoch: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for None."""
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def echo_json(data: Any) -> None:
    echo(json.dumps(data, indent=2, sort_keys=True, default=str))
