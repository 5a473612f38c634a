"""Local AGI: the ``call_log`` handler for installs where Asterisk cannot reach a FastAGI port.

Asterisk starts an AGI script itself (``AGI(telephonyd-call-log,${DIALSTATUS},${HANGUPCAUSE})``,
script in ``astagidir``) and speaks the same protocol as FastAGI over the script's stdin and stdout
(res_agi.c launch_script(): two pipes): the ``agi_*`` block, then one command per line on stdout and
one reply per command on stdin. `main` runs the very `CallLogHandler` the daemon runs, writing into
the same store: load the configuration, open the store, start the outbox's group-commit writer only
(never the dispatcher: the running daemon delivers the row, waking within ``outbox.poll_interval_s``),
answer, set ``TELEPHONYD_RESULT``, exit.

Configuration: ``-c PATH`` (or ``--config PATH``) as the first two arguments, else
``$TELEPHONYD_CONFIG``, else ``/etc/telephonyd/telephonyd.yml`` when it exists. Asterisk passes AGI()
arguments both on the command line and as ``agi_arg_N``: a leading ``-c PATH`` is removed from the
``agi_arg_N`` the handler sees. Logs go to stderr (never stdout, which belongs to the protocol).

Limits: the start stage (``STARTED``) keeps its record in the memory of one process, which ends with
the script, so with local AGI only the end stage reports (from the channel's variables). SIGHUP,
which Asterisk sends to a local AGI script when the channel hangs up mid-script, is ignored: the
``HANGUP`` line on stdin already says so, and the outcome must still be recorded.

Exit codes: 0 (a result word was decided, see ``TELEPHONYD_RESULT``), 1 (no usable AGI stream or
store), 78 (configuration error).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import ConfigError, LimitExceeded, ProtocolError, StoreError
from .fastagi.protocol import (
    AGIBlockParser,
    AGICommandTimeout,
    AGIConnectionClosed,
    set_variable_command,
)
from .fastagi.server import RESULT_TIMEOUT, RESULT_VARIABLE
from .fastagi.session import AGISession
from .logs import configure_logging, log_context

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/telephonyd/telephonyd.yml")
CONFIG_FLAGS = ("-c", "--config")
RESULT_ERROR = "ERROR"
_READ_CHUNK = 65536


def config_path(argv: Sequence[str], environ: dict[str, str] | os._Environ[str]) -> str | None:
    """``-c PATH`` / ``--config PATH`` as ``argv[1:3]``, else ``$TELEPHONYD_CONFIG``, else the default
    file when it exists, else None (built-in defaults)."""
    if len(argv) >= 3 and argv[1] in CONFIG_FLAGS:
        return argv[2]
    if environ.get("TELEPHONYD_CONFIG"):
        return environ["TELEPHONYD_CONFIG"]
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None


def without_config_args(env: dict[str, str]) -> dict[str, str]:
    """``env`` with a leading ``agi_arg_1=-c``, ``agi_arg_2=PATH`` removed and later args renumbered."""
    if env.get("arg_1") not in CONFIG_FLAGS or "arg_2" not in env:
        return env
    out = {k: v for k, v in env.items() if not (k.startswith("arg_") and k[4:].isdigit())}
    n = 3
    while f"arg_{n}" in env:
        out[f"arg_{n - 2}"] = env[f"arg_{n}"]
        n += 1
    return out


async def open_stdio(limit: int, stdin_fd: int = 0, stdout_fd: int = 1) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Asyncio streams over duplicates of the AGI pipes (the originals stay open for the interpreter).

    ``limit`` bounds one reply line, bytes. Raises ValueError when stdin or stdout is a regular file
    (Asterisk always gives pipes).
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(os.dup(stdin_fd), "rb", buffering=0))
    # A StreamReaderProtocol on the write side too: it gives drain() and wait_closed() their waiters.
    transport, protocol = await loop.connect_write_pipe(lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
                                                        os.fdopen(os.dup(stdout_fd), "wb", buffering=0))
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def read_block(reader: asyncio.StreamReader, config: Config) -> tuple[dict[str, str], bytes]:
    """The ``agi_*`` block within ``fastagi.block_timeout_s`` and the ``fastagi`` size limits.

    Raises `LimitExceeded`, `ProtocolError` (not a block; `AGIConnectionClosed` at EOF) or TimeoutError.
    """
    parser = AGIBlockParser(config.fastagi.max_line_bytes, config.fastagi.max_block_bytes)
    async with asyncio.timeout(config.fastagi.block_timeout_s):
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                raise AGIConnectionClosed("stdin closed before the end of the agi_ block")
            if parser.feed(data):
                return parser.env, parser.rest


async def serve(config: Config, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Run one ``call_log`` session on the streams; returns the result word it set."""
    from .app import build_store
    from .calllog import CallLogHandler
    from .outbox import Outbox

    env, rest = await read_block(reader, config)
    session = AGISession(reader, writer, without_config_args(env), command_timeout_s=config.fastagi.command_timeout_s,
                         pending=rest)
    with log_context(uniqueid=session.uniqueid, agi_script="call_log", channel=session.channel):
        store = build_store(config)
        result = RESULT_ERROR
        try:
            await store.start()
            outbox = Outbox(store, node_id=config.node_id, config=config.outbox)
            await outbox.start()  # the group-commit writer only; the daemon's dispatcher delivers
            try:
                handler = CallLogHandler(config.call_log, outbox.enqueue)
                async with asyncio.timeout(config.fastagi.session_timeout_s):
                    result = await handler(session)
            finally:
                await outbox.stop(config.outbox.store_timeout_s)
        except StoreError as exc:
            log.error("local AGI: the store is unavailable; nothing recorded", extra={"error": str(exc)})
        except TimeoutError:
            log.warning("local AGI: handler timed out", extra={"timeout_s": config.fastagi.session_timeout_s})
            result = RESULT_TIMEOUT
        except (AGIConnectionClosed, AGICommandTimeout) as exc:
            log.warning("local AGI: Asterisk stopped answering", extra={"error": str(exc)})
        except Exception:
            log.exception("local AGI handler failed")
        finally:
            await store.close()
        await set_result(session, result, config.fastagi.result_timeout_s)
        log.info("local AGI session done", extra={"result": result, "commands": session.commands_sent})
        return result


async def set_result(session: AGISession, result: str, timeout_s: float) -> None:
    """``SET VARIABLE TELEPHONYD_RESULT`` (best effort, like the FastAGI server)."""
    if not session.usable:
        return
    try:
        await session.set_variable(RESULT_VARIABLE, result, timeout=timeout_s)
    except (ProtocolError, ValueError) as exc:
        log.info("local AGI could not set the result variable", extra={"error": str(exc), "result": result})


async def _run(config: Config | None, config_error: ConfigError | None) -> int:
    limit = config.fastagi.max_reply_bytes if config is not None else 64 * 1024
    try:
        reader, writer = await open_stdio(limit)
    except (ValueError, OSError) as exc:
        log.error("local AGI needs Asterisk's pipes on stdin and stdout", extra={"error": str(exc)})
        return 1
    try:
        if config is None:
            # Still answer the dialplan: it may test ${TELEPHONYD_RESULT}.
            writer.write(f"{set_variable_command(RESULT_VARIABLE, RESULT_ERROR)}\n".encode())
            return ConfigError.exit_code
        try:
            await serve(config, reader, writer)
        except (LimitExceeded, ProtocolError, TimeoutError) as exc:
            log.warning("local AGI: no usable agi_ block on stdin", extra={"error": str(exc) or type(exc).__name__})
            return 1
        return 0
    finally:
        if config_error is not None:
            log.error("configuration error", extra={"error": str(config_error)})
        await close(writer)


async def close(writer: asyncio.StreamWriter, timeout_s: float = 2.0) -> None:
    """Flush what is still buffered for Asterisk, then close our end of its pipe."""
    try:
        async with asyncio.timeout(timeout_s):
            await writer.drain()
            writer.close()
            await writer.wait_closed()
    except (TimeoutError, ConnectionError):
        writer.transport.abort()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``agi/telephonyd-call-log``; returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config: Config | None = None
    error: ConfigError | None = None
    try:
        config = load_config(config_path(argv, os.environ))
    except ConfigError as exc:
        error = exc
    secrets: list[str] = config.secrets() if config is not None else []
    level: Any = config.logging.level if config is not None else "INFO"
    configure_logging(level, config.logging.format if config is not None else "auto", secrets)
    return asyncio.run(_run(config, error))
