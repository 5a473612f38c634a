"""One FastAGI session: the ``agi_*`` environment plus a command/reply channel to Asterisk.

The session is always in step with Asterisk: one command is outstanding at a time (a lock), every
reply is read to its end (skipping ``HANGUP`` and ``100 Trying`` lines, joining multi-line 520s),
and a command that times out or is cancelled mid-flight leaves the session unusable rather than
letting a late reply be taken for the answer to the next command.
"""

from __future__ import annotations

import asyncio

from ..errors import LimitExceeded, ProtocolError
from .protocol import (
    AGICommandTimeout,
    AGIConnectionClosed,
    AGIReply,
    AGIReplyError,
    ReplyParser,
    agi_args,
    command_bytes,
    get_full_variable_command,
    get_variable_command,
    parse_script,
    quote,
    script_from_env,
    set_variable_command,
)


class AGISession:
    """A FastAGI call in progress, handed to a route handler.

    Attributes (Asterisk 22 field names, see res_agi.c setup_env()):

    - ``env``: the ``agi_*`` fields without the prefix (``env["uniqueid"]``, ``env["arg_1"]``).
    - ``script``: the full network script (``call_log--HVcauses--PRI-----...``); ``route``: its
      leading word; ``route_tail``: the text after it; ``params``: its query string (``?a=1``).
    - ``args``: ``agi_arg_1..N`` (the AGI() arguments after the URL).
    - ``hungup``: True once Asterisk sent an unsolicited ``HANGUP`` line. GET/SET VARIABLE,
      GET FULL VARIABLE and VERBOSE still work after it; other commands answer 511, returned as an
      ordinary reply. (AGI in the ``h`` extension runs on a dead channel without any HANGUP line.)
    - ``peer``: ``(host, port)`` of Asterisk.

    ``reader``/``writer`` are the connection's streams; ``pending`` holds bytes that arrived after
    the block; ``command_timeout_s`` bounds each command's wait for its reply (seconds).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: dict[str, str],
        *,
        command_timeout_s: float = 10.0,
        peer: tuple[str, int] | None = None,
        pending: bytes = b"",
    ) -> None:
        self.env = env
        route = parse_script(script_from_env(env))
        self.script = route.script
        self.route = route.route
        self.route_tail = route.tail
        self.params = route.params
        self.args = agi_args(env)
        self.peer = peer
        self.commands_sent = 0
        self._reader = reader
        self._writer = writer
        self._pending = pending
        self._command_timeout_s = command_timeout_s
        self._parser = ReplyParser()
        self._lock = asyncio.Lock()
        self._unusable: str | None = None

    @property
    def hungup(self) -> bool:
        return self._parser.hungup

    @property
    def uniqueid(self) -> str | None:
        return self.env.get("uniqueid")

    @property
    def channel(self) -> str | None:
        return self.env.get("channel")

    @property
    def usable(self) -> bool:
        """False after a command timed out, was cancelled mid-flight, or the connection closed."""
        return self._unusable is None and not self._writer.transport.is_closing()

    # -- commands --------------------------------------------------------------------------------

    async def command(self, line: str, *, timeout: float | None = None) -> AGIReply:
        """Send one command line and return its final reply (any code: 200, 510, 511, 520 ...).

        Raises ValueError for a malformed line or a command not in `SENT_COMMANDS` (nothing is
        sent), `AGICommandTimeout` when no reply
        comes within ``timeout`` (default: the session's command timeout), `AGIConnectionClosed`
        when Asterisk closes the socket, `LimitExceeded` for an oversized reply line,
        `ProtocolError` for a line that is no AGI reply or when the session is already unusable.
        """
        data = command_bytes(line)
        async with self._lock:
            if self._unusable is not None:
                raise ProtocolError(f"AGI session unusable ({self._unusable}); command not sent")
            if self._writer.transport.is_closing():
                self._unusable = "connection closed"
                raise AGIConnectionClosed("connection closed; command not sent")
            self._unusable = "a command was interrupted"
            self._writer.write(data)
            limit = self._command_timeout_s if timeout is None else timeout
            try:
                async with asyncio.timeout(limit):
                    reply = await self._read_reply()
            except TimeoutError:
                self._unusable = "command timed out"
                raise AGICommandTimeout(f"no reply to {_head(line)!r} within {limit}s") from None
            except asyncio.IncompleteReadError:
                self._unusable = "connection closed"
                raise AGIConnectionClosed(f"connection closed while awaiting the reply to {_head(line)!r}") from None
            except ConnectionError as exc:
                self._unusable = "connection closed"
                raise AGIConnectionClosed(f"{type(exc).__name__} awaiting the reply to {_head(line)!r}") from None
            except asyncio.LimitOverrunError:
                self._unusable = "reply too long"
                raise LimitExceeded(f"reply to {_head(line)!r} longer than the reply limit") from None
            self._unusable = None
            self.commands_sent += 1
            return reply

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE name``: the value (``""`` when set but empty), None when unset.

        A name ending in ``)`` reads a dialplan function (``CALLERID(num)``). Raises `AGIReplyError`
        for a non-200 reply.
        """
        line = get_variable_command(name)
        reply = await self.command(line)
        if reply.code == 200 and reply.result == "1":
            return reply.data if reply.data is not None else ""
        if reply.code == 200 and reply.result == "0":
            return None
        raise AGIReplyError(line, reply)

    async def get_full_variable(self, expression: str) -> str:
        """``GET FULL VARIABLE expr``: the expanded expression (``${A}-${B(x)}``), ``""`` if empty."""
        line = get_full_variable_command(expression)
        reply = await self.command(line)
        if reply.code != 200:
            raise AGIReplyError(line, reply)
        if reply.result != "1":
            return ""
        return reply.data or ""

    async def set_variable(self, name: str, value: str, *, timeout: float | None = None) -> None:
        """``SET VARIABLE name "value"``. Raises `AGIReplyError` for a non-200 reply."""
        line = set_variable_command(name, value)
        reply = await self.command(line, timeout=timeout)
        if reply.code != 200:
            raise AGIReplyError(line, reply)

    async def verbose(self, message: str, level: int = 1) -> None:
        """``VERBOSE "message" level``: a line in Asterisk's verbose log."""
        await self.command(f"VERBOSE {quote(message)} {int(level)}")

    # -- reading ---------------------------------------------------------------------------------

    async def _read_reply(self) -> AGIReply:
        parser = self._parser
        while True:
            reply = parser.feed_line(await self._read_line())
            if reply is not None:
                return reply

    async def _read_line(self) -> str:
        pending = self._pending
        if pending:
            end = pending.find(b"\n")
            if end >= 0:
                raw = pending[:end]
                self._pending = pending[end + 1 :]
            else:
                raw = pending + (await self._reader.readuntil(b"\n"))[:-1]
                self._pending = b""
        else:
            raw = (await self._reader.readuntil(b"\n"))[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw.decode("utf-8", "replace")


def _head(line: str) -> str:
    return " ".join(line.split(" ", 3)[:3])[:60]
