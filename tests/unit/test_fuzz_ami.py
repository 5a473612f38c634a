"""Generated input against the AMI framing: only the documented errors, the same messages however
the bytes are split, bounded work. Fed exactly as the client's read loop does (carry the unconsumed
bytes over to the next read)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephonyd.ami.errors import LimitExceeded, ProtocolError
from telephonyd.ami.framing import (
    check_banner,
    encode_action,
    parse_messages,
    split_banner,
)
from tests.helpers import split

FUZZ = settings(max_examples=150, deadline=500, suppress_health_check=[HealthCheck.too_slow])
LIMITS = {"max_line_bytes": 1024, "max_message_bytes": 8192}

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY = st.builds(str.__add__, st.sampled_from(_LETTERS), st.text(_LETTERS + "0123456789_-", max_size=24))
VALUE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=80)
PAIRS = st.lists(st.tuples(KEY, VALUE), min_size=1, max_size=12)


def feed(chunks: list[bytes], **limits: int) -> tuple[list[list[tuple[str, str]]], bytes]:
    """The read loop: parse each read with the bytes left over from the previous one."""
    out: list[list[tuple[str, str]]] = []
    rest = b""
    for chunk in chunks:
        messages, rest = parse_messages(rest + chunk if rest else chunk, **limits)
        out.extend(m.pairs for m in messages)
    return out, rest


def encode_bare_lf(pairs: list[tuple[str, str]]) -> bytes:
    """How Asterisk sometimes ends lines: ``\\n`` without ``\\r``."""
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode() + b"\r\n"


@FUZZ
@given(messages=st.lists(PAIRS, min_size=1, max_size=8), bare_lf=st.lists(st.booleans(), min_size=8, max_size=8),
       cuts=st.lists(st.integers(0, 20_000), max_size=20))
def test_messages_parse_the_same_however_the_bytes_arrive(messages: list, bare_lf: list[bool], cuts: list[int]) -> None:
    data = b"".join(encode_bare_lf(m) if lf else encode_action(m) for m, lf in zip(messages, bare_lf))
    parsed, rest = feed(split(data, cuts), max_line_bytes=16 * 1024, max_message_bytes=256 * 1024)
    assert parsed == [[tuple(p) for p in m] for m in messages]
    assert rest == b""


RAW_LINE = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}".encode(), KEY, VALUE),
    st.builds(lambda k, v: f"{k}:{v}".encode(), KEY, VALUE),
    st.sampled_from([b"Response: Follows", b"--END COMMAND--", b"no colon here", b"", b"\r", b": empty key",
                     b"\x00\x01\x02: ctl", b"Asterisk Call Manager/11.0.0"]),
    st.binary(max_size=60),
)


@FUZZ
@given(lines=st.lists(RAW_LINE, max_size=40), seps=st.lists(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"\n\n"]),
                                                             min_size=40, max_size=40),
       cuts=st.lists(st.integers(0, 20_000), max_size=15))
def test_garbage_raises_only_documented_errors(lines: list[bytes], seps: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + sep for line, sep in zip(lines, seps))
    try:
        parsed, rest = feed(split(data, cuts), **LIMITS)
    except (LimitExceeded, ProtocolError):
        return
    for pairs in parsed:
        assert pairs and all(isinstance(k, str) and isinstance(v, str) and k for k, v in pairs)
    assert len(rest) <= LIMITS["max_message_bytes"]


@FUZZ
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_random_bytes_raise_only_documented_errors(data: bytes, cuts: list[int]) -> None:
    try:
        feed(split(data, cuts), **LIMITS)
    except (LimitExceeded, ProtocolError):
        pass


@FUZZ
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 500), max_size=5))
def test_banner_split_and_check(data: bytes, cuts: list[int]) -> None:
    buffered = b""
    for piece in split(data, cuts):
        try:
            banner, buffered = split_banner(buffered + piece, max_line_bytes=128)
        except LimitExceeded:
            return
        if banner is not None:
            try:
                version = check_banner(banner)
            except ProtocolError:
                return
            assert banner.startswith("Asterisk Call Manager/") and isinstance(version, str)
            return


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_a_message_near_the_limit_arriving_in_small_reads_costs_bounded_work(chunk_size: int) -> None:
    """Asterisk's largest messages (long listings) may arrive in many small TCP reads."""
    pairs = [(f"Key{i}", "v" * 60) for i in range(200)]  # about 14 KB
    data = encode_action(pairs)
    started = time.perf_counter()
    parsed, rest = feed([data[i : i + chunk_size] for i in range(0, len(data), chunk_size)],
                        max_line_bytes=1024, max_message_bytes=64 * 1024)
    assert parsed == [pairs] and rest == b""
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("junk", [b"x" * 20_000, b"Key: " + b"v" * 20_000 + b"\r\n\r\n", (b"K: v\r\n" * 5000) + b"\r\n"])
def test_oversized_input_stops_at_the_limit(junk: bytes) -> None:
    with pytest.raises(LimitExceeded):
        parse_messages(junk, **LIMITS)
