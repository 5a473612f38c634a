"""A block that arrives in one chunk is parsed in one go; the result must be exactly that of the
line-by-line path (same fields, same bytes left over, same error at the same limits)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephonyd.errors import LimitExceeded, ProtocolError
from telephonyd.fastagi.protocol import AGIBlockParser
from tests.conftest import ASTERISK_FIXTURES

RECORDED = sorted(ASTERISK_FIXTURES.rglob("*.env.raw"))


class LineByLine(AGIBlockParser):
    """The parser with its one-go path turned off: every block goes line by line."""

    def _feed_whole(self, data: bytes) -> bool:
        return False


def _outcome(parser: AGIBlockParser, data: bytes) -> tuple[object, ...]:
    try:
        done = parser.feed(data)
    except (LimitExceeded, ProtocolError) as exc:
        return ("error", type(exc), str(exc))
    return ("ok", done, parser.env, parser.rest if done else None)


def _whole_and_split(data: bytes, max_line: int = 8192, max_block: int = 64 * 1024) -> None:
    whole = _outcome(AGIBlockParser(max_line, max_block), data)
    by_line = _outcome(LineByLine(max_line, max_block), data)
    assert whole == by_line


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_blocks_parse_the_same_whole_or_line_by_line(path: Path):
    raw = path.read_bytes()
    _whole_and_split(raw + b"200 result=1\n")
    parser = AGIBlockParser()
    assert parser.feed(raw + b"HANGUP\n")
    assert parser.rest == b"HANGUP\n"
    assert parser.env["uniqueid"] and parser.env["network"] == "yes"


def test_whole_block_limits_match_the_line_path():
    block = b"agi_network: yes\nagi_uniqueid: 1795237857.3\nagi_arg_1: " + b"x" * 300 + b"\n\n"
    for max_line in (300, 310, 311, 312, 8192):
        for max_block in (len(block) - 1, len(block), len(block) + 1):
            _whole_and_split(block, max_line, max_block)
    with pytest.raises(LimitExceeded):
        AGIBlockParser(max_block_bytes=len(block) - 1).feed(block)
    with pytest.raises(LimitExceeded):
        AGIBlockParser(max_line_bytes=310).feed(block)
    assert AGIBlockParser(max_line_bytes=311, max_block_bytes=len(block)).feed(block)


@pytest.mark.parametrize(
    "data",
    [
        b"agi_a: 1\nfoo: 2\n\n",  # a foreign line in the middle
        b"agi_a: 1\nagi_b\n\n",  # no colon
        b"agi_a: 1\r\nagi_b: 2\r\n\r\n",  # CRLF
        b"agi_a: 1\r\nagi_b: 2\n\n",  # mixed line ends
        b"\nagi_a: 1\n\n",  # empty block, then bytes
        b"\n\nagi_a: 1\n",
        b"agi_a:\nagi_b:  two spaces\nagi_c:x:y\n\nrest",
        b"agi_n: Jos\xe9 \xff\n\n",  # not UTF-8
        b"agi_a: 1\nagi_a: 2\n\n",  # the last value wins
        b"agi_a: \x85\xe2\x80\xa8\x0b\x0c\n\n",  # line separators other than LF stay in the value
    ],
)
def test_odd_blocks_parse_the_same_whole_or_line_by_line(data: bytes):
    _whole_and_split(data)


_LINE = st.one_of(
    st.builds(lambda k, v: b"agi_" + k + b": " + v, st.binary(max_size=12), st.binary(max_size=40)),
    st.binary(max_size=30),
    st.sampled_from([b"agi_x:", b"agi_", b"agi_:v", b"\r", b"agi_y: a\r", b""]),
)


@given(st.lists(_LINE, max_size=12), st.binary(max_size=20), st.integers(8, 80), st.integers(16, 400))
def test_any_block_parses_the_same_whole_or_line_by_line(lines, tail, max_line, max_block):
    data = b"\n".join(lines) + b"\n\n" + tail
    _whole_and_split(data, max_line, max_block)
