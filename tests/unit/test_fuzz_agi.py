"""Generated input against the FastAGI protocol code: only the documented errors, bounded work.

The ``agi_*`` block parser meets whatever a client sends before the first command; the reply parser
meets whatever the peer sends back; the script splitter meets any ``agi_network_script``.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephonyd.errors import LimitExceeded, ProtocolError
from telephonyd.fastagi.protocol import (
    AGIBlockParser,
    AGIReply,
    ReplyParser,
    parse_reply_line,
    parse_script,
)
from tests.helpers import split

FUZZ = settings(max_examples=150, deadline=500, suppress_health_check=[HealthCheck.too_slow])

KEY = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=20)
VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60)


def block_of(fields: dict[str, str], crlf: bool = False) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    return b"".join(f"agi_{k}: {v}".encode() + end for k, v in fields.items()) + end


# Lines a hostile or broken client sends: valid fields, near misses and junk.
LINE = st.one_of(
    st.builds(lambda k, v: f"agi_{k}: {v}".encode(), KEY, VALUE),
    st.builds(lambda k: f"agi_{k}".encode(), KEY),  # no colon
    st.sampled_from([b"GET / HTTP/1.1", b"\x16\x03\x01\x02\x00", b"agi", b"ag", b"\r", b"", b"\x00" * 8]),
    st.binary(max_size=80),
)


@FUZZ
@given(lines=st.lists(LINE, max_size=30), sep=st.sampled_from([b"\n", b"\r\n"]),
       cuts=st.lists(st.integers(0, 5000), max_size=12), tail=st.binary(max_size=40))
def test_block_parser_raises_only_documented_errors(lines: list[bytes], sep: bytes, cuts: list[int], tail: bytes) -> None:
    data = sep.join(lines) + tail
    parser = AGIBlockParser(max_line_bytes=256, max_block_bytes=2048)
    try:
        for piece in split(data, cuts):
            if parser.feed(piece):
                break
    except (LimitExceeded, ProtocolError):
        return
    if parser.done:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in parser.env.items())
        assert sum(len(k) + len(v) for k, v in parser.env.items()) <= 2048
        assert parser.feed(b"more") and parser.rest.endswith(b"more")  # bytes after the block are kept


@FUZZ
@given(fields=st.dictionaries(KEY, VALUE, max_size=25), crlf=st.booleans(),
       cuts=st.lists(st.integers(0, 5000), max_size=20), after=st.binary(max_size=30))
def test_valid_blocks_parse_the_same_however_they_arrive(fields: dict[str, str], crlf: bool, cuts: list[int],
                                                         after: bytes) -> None:
    data = block_of(fields, crlf) + after
    parser = AGIBlockParser(max_line_bytes=8192, max_block_bytes=64 * 1024)
    done = False
    for piece in split(data, cuts):
        done = parser.feed(piece)
    assert done
    assert parser.env == fields
    assert parser.rest == after


@FUZZ
@given(fields=st.dictionaries(KEY, VALUE, min_size=1, max_size=40), limit=st.integers(64, 1024),
       cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_block_limit_holds_however_the_bytes_arrive(fields: dict[str, str], limit: int, cuts: list[int]) -> None:
    data = block_of(fields)
    parser = AGIBlockParser(max_line_bytes=limit, max_block_bytes=limit)
    try:
        for piece in split(data, cuts):
            parser.feed(piece)
    except LimitExceeded:
        assert len(data) > limit or any(len(f"agi_{k}: {v}".encode()) > limit for k, v in fields.items())
    else:
        assert len(data) <= limit and parser.env == fields


def test_a_block_trickling_in_byte_by_byte_costs_linear_work() -> None:
    """A client that sends one byte per packet up to the limits must not make the parser quadratic."""
    fields = {f"field{i}": "x" * 200 for i in range(300)}
    data = block_of(fields)
    parser = AGIBlockParser(max_line_bytes=8192, max_block_bytes=len(data) + 1)
    started = time.perf_counter()
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
    assert parser.done and parser.env == fields
    assert time.perf_counter() - started < 2.0


@FUZZ
@given(lines=st.lists(st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=60),
    st.sampled_from(["HANGUP", "100 result=0 Trying...", "520-Invalid command syntax.", "520 End of proper usage.",
                     "200 result=1 (x)", "200 result=", "200", "2000 result=1", "511 Command Not Permitted"]),
), max_size=20))
def test_reply_parser_raises_only_protocol_errors(lines: list[str]) -> None:
    parser = ReplyParser()
    for line in lines:
        try:
            reply = parser.feed_line(line)
        except ProtocolError:
            parser = ReplyParser()
            continue
        if reply is not None:
            assert isinstance(reply, AGIReply) and 100 <= reply.code <= 999


@FUZZ
@given(code=st.integers(200, 599), result=st.from_regex(r"-?[0-9]{1,6}", fullmatch=True),
       data=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n()"), max_size=40),
       extra=st.sampled_from(["", " endpos=1234", " (timeout)"]))
def test_reply_lines_round_trip(code: int, result: str, data: str, extra: str) -> None:
    extra = "" if extra == " (timeout)" else extra
    reply = parse_reply_line(f"{code} result={result} ({data}){extra}")
    assert (reply.code, reply.result, reply.data) == (code, result, data)


@FUZZ
@given(script=st.text(max_size=200))
def test_any_network_script_splits_without_error(script: str) -> None:
    route = parse_script(script)
    assert route.route + route.tail == script.lstrip("/")
    assert not any(ch in route.route for ch in "?/, \t\r\n")
    assert "--" not in route.route


@pytest.mark.parametrize("junk", [b"\xff" * 5000, b"agi_" + b"a" * 100_000, b"agi_x: y\n" * 10_000])
def test_oversized_input_stops_at_the_limit(junk: bytes) -> None:
    parser = AGIBlockParser(max_line_bytes=8192, max_block_bytes=64 * 1024)
    with pytest.raises((LimitExceeded, ProtocolError)):
        parser.feed(junk)
