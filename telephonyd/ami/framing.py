"""AMI framing: pure functions over bytes (no sockets), so they are tested on recorded traffic.

Wire facts (Asterisk 22.10.1 recordings, main/manager.c):
- On connect Asterisk sends one line, ``Asterisk Call Manager/<ami version>\\r\\n``, and no blank line.
  Forks send other versions: only the prefix is checked.
- A message is ``Key: Value\\r\\n`` lines ended by an empty line. Keys are case-insensitive and may
  repeat; a value may be empty (``RegServer: ``); split on the first ``": "``.
- Asterisk sometimes ends a line with a bare ``\\n`` (``Message: No Contacts found\\n\\r\\n\\r\\n``), so a
  line ends at ``\\n`` with an optional ``\\r`` before it, and empty messages are skipped.
- Before Asterisk 14 the ``Command`` action answered ``Response: Follows`` followed by raw output
  lines with no colon; inside such a response they are kept as ``Output`` values. Anywhere else a
  line with no colon is garbage and the peer is not trusted (`ProtocolError`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from .errors import LimitExceeded, ProtocolError
from .message import LINE as _LINE
from .message import AMIMessage

BANNER_PREFIX = "Asterisk Call Manager/"

_BLOCK_END = re.compile(r"\n\r?\n")
#: A line that the whole-buffer fast path cannot take as ``Key: Value`` (searched in ``"\r\n" + text``):
#: one starting with a colon or a control character other than the CR of an empty line, or one whose
#: key (its characters up to the first ``": "``) holds a control character or runs to the line end.
#: Possessive, so each line costs about its key (17 % less than a lookahead for the empty line).
_ODD_LINE = re.compile(r"\r\n(?:[^\x00-\x1f\x7f:]++(?::(?! )[^\x00-\x1f\x7f:]*+)*+(?!:)|[\x00-\x0c\x0e-\x1f\x7f:])")


def split_banner(data: bytes, *, max_line_bytes: int = 16 * 1024) -> tuple[str | None, bytes]:
    """Take the banner line off ``data``: ``(banner or None if incomplete, unconsumed bytes)``.

    Raises `LimitExceeded` when no line end arrives within ``max_line_bytes``.
    """
    end = data.find(b"\n")
    if end < 0:
        if len(data) > max_line_bytes:
            raise LimitExceeded(f"AMI banner longer than {max_line_bytes} bytes")
        return None, data
    line = data[:end]
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > max_line_bytes:
        raise LimitExceeded(f"AMI banner longer than {max_line_bytes} bytes")
    return line.decode("utf-8", "replace"), data[end + 1 :]


def check_banner(banner: str) -> str:
    """The AMI version from a banner (``11.0.0``); `ProtocolError` if it is not an AMI banner."""
    if not banner.startswith(BANNER_PREFIX):
        raise ProtocolError(f"not an Asterisk manager banner: {banner[:80]!r}")
    return banner[len(BANNER_PREFIX) :].strip()


def _complete_end(data: bytes) -> int:
    """Index just past the last message terminator in ``data`` (0 when there is none)."""
    crlf = data.rfind(b"\n\r\n")
    lf = data.rfind(b"\n\n")
    return max(crlf + 3 if crlf >= 0 else 0, lf + 2 if lf >= 0 else 0)


def parse_messages(
    data: bytes,
    *,
    max_line_bytes: int = 16 * 1024,
    max_message_bytes: int = 256 * 1024,
    on_malformed: Callable[[str, ProtocolError], None] | None = None,
    fast: bool = True,
) -> tuple[list[AMIMessage], bytes]:
    """Parse every complete message in ``data``; return them and the bytes not consumed.

    The caller keeps the returned bytes and prepends them to the next read. Raises
    `LimitExceeded` for a line or message past the limits (complete or still arriving) and
    `ProtocolError` for a line that is not ``Key: Value``. Limits on complete messages count
    decoded characters, on partial data bytes. ``on_malformed(block, error)``: called for a message
    holding a line that is not ``Key: Value``, which is then skipped instead of raising.

    Text whose lines all end ``\\r\\n`` and all read ``Key: Value`` (nearly all Asterisk sends; one
    regex search over the whole text tells) takes a fast path giving messages that parse their fields
    on first read; anything else, or ``fast=False``, goes block by block through the reference
    parser. Both give equal messages and raise the same errors.
    """
    end = _complete_end(data)
    rest = data[end:] if end else data
    if rest:
        if len(rest) > max_message_bytes:
            raise LimitExceeded(f"AMI message longer than {max_message_bytes} bytes")
        if len(rest) - rest.rfind(b"\n") - 1 > max_line_bytes:
            raise LimitExceeded(f"AMI line longer than {max_line_bytes} bytes")
    if not end:
        return [], rest
    text = data[:end].decode("utf-8", "replace")
    if (fast and text.count("\n") == text.count("\r") == text.count("\r\n")
            and not _ODD_LINE.search("\r\n" + text)):
        return _parse_plain(text, max_line_bytes, max_message_bytes, on_malformed), rest
    return _parse_text(text, max_line_bytes, max_message_bytes, on_malformed), rest


def _parse_plain(
    text: str,
    max_line_bytes: int,
    max_message_bytes: int,
    on_malformed: Callable[[str, ProtocolError], None] | None,
) -> list[AMIMessage]:
    """The fast path, for text whose lines all end ``\\r\\n`` and are all ``Key: Value`` or empty (what
    Asterisk sends nearly always): one split, and each message kept as its text, parsed into pairs
    only when a field is read (`AMIMessage.from_block`). Gives the same messages and raises the same
    errors as `_parse_text` (whose blocks are these plus the ``\\r`` of their terminator)."""
    messages: list[AMIMessage] = []
    append = messages.append
    from_block = AMIMessage.from_block
    small = min(max_line_bytes, max_message_bytes)  # a block shorter is under both limits
    for block in text.split("\r\n\r\n"):
        if not block:
            continue
        if len(block) >= small or block[0] == "\r":  # lines to measure, or empty lines first
            if len(block) >= max_message_bytes:
                raise LimitExceeded(f"AMI message longer than {max_message_bytes} bytes")
            block += "\r"  # as `_parse_text` cuts it
            try:
                pairs = _parse_block(block, max_line_bytes)
            except ProtocolError as exc:  # a line past the limit
                if on_malformed is None:
                    raise
                on_malformed(block, exc)
                continue
            if pairs:
                append(AMIMessage(pairs))
        elif block[:7] == "Event: ":  # where Asterisk puts it: the name read off the first line
            end = block.find("\r\n", 7)
            append(from_block(block, block[7:end] if end >= 0 else block[7:]))
        else:
            append(from_block(block))
    return messages


def _parse_text(
    text: str,
    max_line_bytes: int,
    max_message_bytes: int,
    on_malformed: Callable[[str, ProtocolError], None] | None,
) -> list[AMIMessage]:
    """The reference parser: split on empty lines, each block parsed whole (any line end, raw
    ``Follows`` output, malformed blocks)."""
    messages: list[AMIMessage] = []
    for block in _BLOCK_END.split(text):
        if not block or block == "\r":
            continue
        if len(block) > max_message_bytes:
            raise LimitExceeded(f"AMI message longer than {max_message_bytes} bytes")
        try:
            pairs = _parse_block(block, max_line_bytes)
        except ProtocolError as exc:
            if on_malformed is None:
                raise
            on_malformed(block, exc)
            continue
        if pairs:
            messages.append(AMIMessage(pairs))
    return messages


def _parse_block(block: str, max_line_bytes: int) -> list[tuple[str, str]]:
    # Fast path: every line is ``Key: Value`` with printable keys (what Asterisk sends nearly always).
    pairs = _LINE.findall(block)
    lines = block.count("\n") + 1
    if pairs and len(pairs) == lines and len(block) <= max_line_bytes:
        return pairs
    return _parse_block_slowly(block, max_line_bytes)


def _parse_block_slowly(block: str, max_line_bytes: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    follows = False
    for line in block.split("\n"):
        line = line.removesuffix("\r")
        if not line:
            continue
        if len(line) > max_line_bytes:
            raise LimitExceeded(f"AMI line longer than {max_line_bytes} bytes")
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep or not key or not key.isprintable():
            if follows:
                pairs.append(("Output", line))
                continue
            raise ProtocolError(f"malformed AMI line {line[:60]!r}")
        if not pairs and key.lower() == "response" and value.lower() == "follows":
            follows = True
        pairs.append((key, value))
    return pairs


def encode_action(fields: Mapping[str, object] | Iterable[tuple[str, object]]) -> bytes:
    """Serialize an action: ``Key: Value\\r\\n`` lines and the empty line.

    List or tuple values become repeated keys (``Variable``); None values are left out. A CR or LF
    inside a key or value raises `ValueError`: it would let a value inject another action.
    """
    items = fields.items() if isinstance(fields, Mapping) else fields
    out: list[str] = []
    for key, value in items:
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            text = str(item)
            if "\r" in key or "\n" in key or "\r" in text or "\n" in text or ":" in key:
                raise ValueError(f"AMI field {key!r} holds a line break or a colon in its key")
            out.append(f"{key}: {text}\r\n")
    out.append("\r\n")
    return "".join(out).encode("utf-8")
