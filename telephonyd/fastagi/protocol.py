"""The FastAGI wire protocol as Asterisk 22 speaks it: pure functions and parsers, no sockets.

Facts (res_agi.c, checked against a real Asterisk 22.10.1, see tests/fixtures/asterisk-22.10.1/agi):

- On connect Asterisk sends ``agi_<name>: <value>\\n`` lines (no CR), then an empty line.
- The server sends one command per line, ended by ``\\n`` only; a CR would become part of the last
  argument. Asterisk splits arguments on spaces/tabs; double quotes group, ``\\`` escapes.
- Replies: ``200 result=<n> [(<data>)] [extra]``, ``510 Invalid or unknown command``,
  ``511 Command Not Permitted on a dead channel or intercept routine``, ``520 ...`` or the
  multi-line ``520-...`` .. ``520 End of proper usage.``; ``100 result=0 Trying...`` precedes the
  final reply of GOSUB. When the channel hangs up, an unsolicited ``HANGUP`` line arrives, possibly
  between a command and its reply.
- ``agi_network_script`` is everything after ``agi://host[:port]/``, query string included.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..errors import LimitExceeded, ProtocolError

#: Every AGI command telephonyd sends (`AGISession.command` refuses any other, words compared
#: case-insensitively); each has a real Asterisk's recorded replies on a live and on a dead channel in
#: tests/fixtures (tests/unit/test_fastagi_fake.py). Add the recording with the command.
SENT_COMMANDS: tuple[str, ...] = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "EXEC MSET")

#: Longest command line accepted, in bytes, without its ``\n``.
MAX_COMMAND_BYTES = 8192

_ROUTE_STOP = frozenset("?/, \t\r\n\v\f")
#: One ``agi_<name>: <value>`` line of a block: the name up to the first ``:``, one optional
#: space, the value (the same split as `AGIBlockParser._add`).
_BLOCK_LINE = re.compile(r"^agi_([^:\n]*): ?(.*)$", re.MULTILINE)


class AGIReplyError(ProtocolError):
    """Asterisk answered a command with a code the caller cannot use (510, 511, 520, ...)."""

    def __init__(self, command: str, reply: AGIReply) -> None:
        head = " ".join(command.split(" ", 2)[:2])
        super().__init__(f"{head} answered {reply.text.partition(chr(10))[0]!r}")
        self.command = command
        self.reply = reply


class AGIConnectionClosed(ProtocolError):
    """Asterisk closed the connection (before the block ended, or while a reply was awaited)."""


class AGICommandTimeout(LimitExceeded):
    """No reply to a command within the command timeout; the session is no longer usable."""


# ---------------------------------------------------------------------------------------------
# The agi_* block


class AGIBlockParser:
    """Incremental parser of the ``agi_*`` block: feed bytes as they arrive until `feed` is True.

    Tolerates CRLF line ends. Raises `LimitExceeded` as soon as a line grows past
    ``max_line_bytes`` or the block past ``max_block_bytes`` (without waiting for a newline), and
    `ProtocolError` as soon as the peer sends something that cannot start an ``agi_`` line (an HTTP
    probe, binary junk). Non-UTF-8 bytes are decoded with replacement characters. After the empty
    line, `env` holds the fields (keys without ``agi_``) and `rest` the bytes that followed.
    """

    __slots__ = ("max_line_bytes", "max_block_bytes", "env", "rest", "done", "_buf", "_consumed")

    def __init__(self, max_line_bytes: int = 8192, max_block_bytes: int = 64 * 1024) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_block_bytes = max_block_bytes
        self.env: dict[str, str] = {}
        self.rest = b""
        self.done = False
        self._buf = b""
        self._consumed = 0

    def feed(self, data: bytes) -> bool:
        """Add received bytes; True once the empty line ending the block has arrived."""
        if self.done:
            self.rest += data
            return True
        if not self._consumed and not self._buf and self._feed_whole(data):
            return True
        buf = self._buf + data if self._buf else data
        pos = 0
        find = buf.find
        while True:
            end = find(b"\n", pos)
            if end < 0:
                break
            line = buf[pos:end]
            pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_bytes:
                raise LimitExceeded(f"agi_ line longer than {self.max_line_bytes} bytes")
            if self._consumed + pos > self.max_block_bytes:
                raise LimitExceeded(f"agi_ block longer than {self.max_block_bytes} bytes")
            if not line:
                self.done = True
                self.rest = buf[pos:]
                self._buf = b""
                self._consumed += pos
                return True
            self._add(line)
        self._consumed += pos
        pending = buf[pos:]
        self._buf = pending
        if pending:
            if len(pending) > self.max_line_bytes:
                raise LimitExceeded(f"agi_ line longer than {self.max_line_bytes} bytes")
            if self._consumed + len(pending) > self.max_block_bytes:
                raise LimitExceeded(f"agi_ block longer than {self.max_block_bytes} bytes")
            head = pending[:4]
            if not b"agi_".startswith(head) and head != b"\r":
                raise ProtocolError(f"not an agi_ line: {_preview(pending)}")
        return False

    def _feed_whole(self, data: bytes) -> bool:
        """The usual case, a whole block in the first chunk, parsed in one go; False (nothing
        done) for anything else: no end yet, CRLF, a limit or a bad line, an empty block. The
        line-by-line path then handles it, and raises the same error at the same line."""
        end = data.find(b"\n\n")
        if end <= 0 or end + 2 > self.max_block_bytes:
            return False
        block = data[:end]
        if b"\r" in block or (end > self.max_line_bytes and _longest_line(block) > self.max_line_bytes):
            return False
        text = block.decode("utf-8", "replace")
        fields = _BLOCK_LINE.findall(text)
        if len(fields) != text.count("\n") + 1:
            return False  # a line that is no ``agi_<name>:<value>`` line
        self.env.update(fields)
        self.done = True
        self.rest = data[end + 2 :]
        self._consumed = end + 2
        return True

    def _add(self, line: bytes) -> None:
        if not line.startswith(b"agi_"):
            raise ProtocolError(f"not an agi_ line: {_preview(line)}")
        text = line.decode("utf-8", "replace")
        key, sep, value = text.partition(":")
        if not sep:
            raise ProtocolError(f"agi_ line without ':': {_preview(line)}")
        if value.startswith(" "):
            value = value[1:]
        self.env[key[4:]] = value


def _longest_line(block: bytes) -> int:
    return max(len(line) for line in block.split(b"\n"))


def _preview(data: bytes) -> str:
    return repr(data[:40])


def parse_block(data: bytes, max_line_bytes: int = 8192, max_block_bytes: int = 64 * 1024) -> dict[str, str]:
    """Parse a complete block (convenience for tests and tools); ProtocolError if it is unfinished."""
    parser = AGIBlockParser(max_line_bytes, max_block_bytes)
    if not parser.feed(data):
        raise ProtocolError("agi_ block has no terminating empty line")
    return parser.env


def agi_args(env: dict[str, str]) -> list[str]:
    """``agi_arg_1`` .. ``agi_arg_N`` in order (stops at the first missing index)."""
    args: list[str] = []
    while True:
        value = env.get(f"arg_{len(args) + 1}")
        if value is None:
            return args
        args.append(value)


# ---------------------------------------------------------------------------------------------
# Routes


@dataclass(frozen=True, slots=True)
class AGIRoute:
    """A network script split for routing.

    ``route`` is the leading word (up to the first ``?``, ``--``, ``/``, ``,`` or whitespace);
    ``tail`` is the text after it, separator included (``--HVcauses--...``, ``?x=1``); ``params``
    is the query string when the route is followed by ``?`` (percent-decoded, last value wins).
    """

    script: str
    route: str
    tail: str
    params: dict[str, str] = field(default_factory=dict)


def parse_script(script: str) -> AGIRoute:
    """Split ``call_log``, ``call_log?x=1&y=2`` or ``call_log--HVcauses--PRI-----...)``."""
    text = script.lstrip("/")
    end = len(text)
    for i, ch in enumerate(text):
        if ch in _ROUTE_STOP or (ch == "-" and text.startswith("--", i)):
            end = i
            break
    route, tail = text[:end], text[end:]
    params = dict(parse_qsl(tail[1:], keep_blank_values=True)) if tail.startswith("?") else {}
    return AGIRoute(script=script, route=route, tail=tail, params=params)


def script_from_env(env: dict[str, str]) -> str:
    """The network script: ``agi_network_script``, else the path of ``agi_request``'s URL."""
    script = env.get("network_script")
    if script is not None:
        return script
    request = env.get("request", "")
    scheme, sep, rest = request.partition("://")
    if sep and scheme.startswith("agi"):
        return rest.partition("/")[2]
    return ""


# ---------------------------------------------------------------------------------------------
# Replies


@dataclass(frozen=True, slots=True)
class AGIReply:
    """One final reply. ``result`` is the text after ``result=`` (None when absent); ``data`` the
    text inside the parentheses, up to the LAST ``)`` (None when absent); ``text`` the raw reply,
    lines joined with ``\\n`` for a multi-line 520."""

    code: int
    result: str | None
    data: str | None
    text: str

    @property
    def ok(self) -> bool:
        return self.code == 200


def parse_reply_line(line: str) -> AGIReply:
    """Parse a single-line final reply such as ``200 result=1 (value)`` or ``510 Invalid ...``."""
    if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] != " "):
        raise ProtocolError(f"not an AGI reply: {line[:80]!r}")
    code = int(line[:3])
    rest = line[4:]
    if not rest.startswith("result="):
        return AGIReply(code, None, None, line)
    value = rest[7:]
    space = value.find(" ")
    if space < 0:
        return AGIReply(code, value, None, line)
    result, after = value[:space], value[space + 1 :]
    data = None
    if after.startswith("("):
        close = after.rfind(")")
        data = after[1:close] if close > 0 else after[1:]
    return AGIReply(code, result, data, line)


class ReplyParser:
    """Reads the lines Asterisk sends after a command until the final reply.

    `feed_line` takes one line without its newline and returns the `AGIReply` once complete, None
    while more lines are needed: ``HANGUP`` sets `hungup` and is skipped, ``100 ...`` (Trying) is
    skipped, ``NNN-`` opens a multi-line reply that ends at ``NNN `` (``520 End of proper usage.``),
    empty lines are ignored. Anything else raises `ProtocolError`. `hungup` stays True.
    """

    __slots__ = ("hungup", "_lines", "_end")

    def __init__(self) -> None:
        self.hungup = False
        self._lines: list[str] | None = None
        self._end = ""

    def feed_line(self, line: str) -> AGIReply | None:
        if self._lines is not None:
            self._lines.append(line)
            if line.startswith(self._end):
                lines, self._lines = self._lines, None
                return AGIReply(int(self._end[:3]), None, None, "\n".join(lines))
            return None
        if line == "HANGUP":
            self.hungup = True
            return None
        if not line:
            return None
        if len(line) > 3 and line[3] == "-" and line[:3].isdigit():
            self._lines = [line]
            self._end = line[:3] + " "
            return None
        reply = parse_reply_line(line)
        if reply.code == 100:
            return None
        return reply


# ---------------------------------------------------------------------------------------------
# Commands


def check_sendable(command: str) -> None:
    """Raise ValueError unless ``command`` starts with one of `SENT_COMMANDS`."""
    words = command.upper().split()
    if not any(words[: len(known.split())] == known.split() for known in SENT_COMMANDS):
        raise ValueError(f"AGI command {' '.join(words[:3])!r} is not in fastagi.protocol.SENT_COMMANDS")


@functools.lru_cache(maxsize=1024)
def command_bytes(command: str) -> bytes:
    """`check_sendable` then `format_command`, remembered per line: a handler sends the same few
    lines in every session (its fetch plan, the result word). Raises what those raise (a refused
    line is never remembered)."""
    check_sendable(command)
    return format_command(command)


def format_command(command: str) -> bytes:
    """The bytes of a command line: UTF-8 plus ``\\n``.

    Raises ValueError for CR, LF or NUL inside (Asterisk would split or truncate the line) and for
    more than `MAX_COMMAND_BYTES` bytes.
    """
    if "\n" in command or "\r" in command or "\0" in command:
        raise ValueError("AGI command must not contain CR, LF or NUL")
    data = command.encode("utf-8")
    if len(data) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
    return data + b"\n"


def quote(value: str) -> str:
    """A double-quoted argument; ``"`` and ``\\`` are escaped as res_agi's parse_args() expects."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def word(value: str) -> str:
    """``value`` as one argument: as is when safe, else quoted (empty, blanks, quotes, backslash)."""
    if value and not any(ch in ' \t"\\' for ch in value):
        return value
    return quote(value)


def get_variable_command(name: str) -> str:
    return "GET VARIABLE " + word(name)


def get_full_variable_command(expression: str) -> str:
    return "GET FULL VARIABLE " + word(expression)


def set_variable_command(name: str, value: str) -> str:
    """``SET VARIABLE name "value"`` (the value always quoted)."""
    return f"SET VARIABLE {word(name)} {quote(value)}"
