"""The FastAGI wire protocol: block parser, reply parser, routes, command formatting (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephonyd.errors import LimitExceeded, ProtocolError
from telephonyd.fastagi.protocol import (
    MAX_COMMAND_BYTES,
    AGIBlockParser,
    AGIReply,
    ReplyParser,
    agi_args,
    format_command,
    get_full_variable_command,
    get_variable_command,
    parse_block,
    parse_reply_line,
    parse_script,
    quote,
    script_from_env,
    set_variable_command,
)
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.agi import parse_agi_args, recorded_channels

BLOCK_FILES = sorted((ASTERISK_FIXTURES / "vicidial").glob("*.env.raw")) + sorted(
    (ASTERISK_FIXTURES / "agi").glob("agi_block_*.txt")
)


def _expected_env(raw: bytes) -> dict[str, str]:
    """The block read the simplest possible way, to compare the incremental parser against."""
    env = {}
    for line in raw.decode().split("\n"):
        if line:
            key, _, value = line.partition(": ")
            env[key.removeprefix("agi_")] = value
    return env


def test_recorded_blocks_are_all_present():
    assert len(BLOCK_FILES) == 25  # with the four lab blocks


# -- block parser --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BLOCK_FILES, ids=lambda p: p.name)
def test_recorded_block_parses_at_every_split_offset(path: Path):
    raw = path.read_bytes()
    expected = _expected_env(raw)
    assert expected["version"] == "22.10.1"
    for cut in range(len(raw) + 1):
        parser = AGIBlockParser()
        first = parser.feed(raw[:cut])
        assert first == (cut == len(raw))
        if not first:
            assert parser.feed(raw[cut:]) is True
        assert parser.env == expected, cut
        assert parser.rest == b""


@pytest.mark.parametrize("path", BLOCK_FILES[:3], ids=lambda p: p.name)
def test_recorded_block_fed_byte_by_byte(path: Path):
    raw = path.read_bytes()
    parser = AGIBlockParser()
    results = [parser.feed(raw[i : i + 1]) for i in range(len(raw))]
    assert results[-1] is True and not any(results[:-1])
    assert parser.env == _expected_env(raw)


def test_vicidial_hangup_block_keeps_the_literal_trailing_parenthesis():
    env = parse_block((ASTERISK_FIXTURES / "vicidial" / "02_BUSY_agi2_h-vicidial_4577.env.raw").read_bytes())
    assert env["network_script"].startswith("call_log--HVcauses--PRI-----NODEBUG-----17-----BUSY")
    assert env["network_script"].endswith("SIP 486 Busy Here)")
    assert env["accountcode"] == ""
    assert env["extension"] == "h"


def test_block_arguments_and_args_list():
    env = parse_block((ASTERISK_FIXTURES / "vicidial" / "01_ANSWER_agi3_h-modern_4573.env.raw").read_bytes())
    assert env["arg_1"] == "ANSWER" and env["arg_2"] == "16"
    assert agi_args(env) == ["ANSWER", "16"]
    assert agi_args({"arg_1": "a", "arg_3": "c"}) == ["a"]
    assert agi_args({}) == []


def test_bytes_after_the_empty_line_are_kept():
    raw = (ASTERISK_FIXTURES / "agi" / "agi_block_local_originate_1.txt").read_bytes()
    parser = AGIBlockParser()
    assert parser.feed(raw + b"HANGUP\n200 res")
    assert parser.rest == b"HANGUP\n200 res"
    assert parser.feed(b"ult=1\n")
    assert parser.rest == b"HANGUP\n200 result=1\n"


def test_crlf_line_ends_are_tolerated():
    raw = (ASTERISK_FIXTURES / "agi" / "agi_block_pjsip_call_1010_to_100.txt").read_bytes()
    crlf = raw.replace(b"\n", b"\r\n")
    for cut in range(0, len(crlf) + 1, 7):
        parser = AGIBlockParser()
        done = parser.feed(crlf[:cut]) or parser.feed(crlf[cut:])
        assert done and parser.env == _expected_env(raw)


def test_empty_value_without_space_and_empty_block():
    assert parse_block(b"agi_accountcode:\nagi_x: a: b\n\n") == {"accountcode": "", "x": "a: b"}
    assert parse_block(b"\n") == {}


def test_non_utf8_bytes_are_replaced_not_fatal():
    env = parse_block(b"agi_calleridname: Jos\xe9 \xff\xfe\nagi_uniqueid: 1.2\n\n")
    assert env["calleridname"] == "Jos\ufffd \ufffd\ufffd"
    assert env["uniqueid"] == "1.2"


def test_line_limit_trips_before_any_newline_arrives():
    parser = AGIBlockParser(max_line_bytes=256, max_block_bytes=4096)
    assert parser.feed(b"agi_x: " + b"a" * 249) is False  # 256 bytes: at the limit
    with pytest.raises(LimitExceeded):
        parser.feed(b"a")


def test_line_limit_counts_complete_lines_too():
    with pytest.raises(LimitExceeded):
        AGIBlockParser(max_line_bytes=256).feed(b"agi_x: " + b"a" * 250 + b"\n")
    assert AGIBlockParser(max_line_bytes=256).feed(b"agi_x: " + b"a" * 249 + b"\n\n")


def test_block_limit():
    line = b"agi_field: " + b"v" * 50 + b"\n"  # 62 bytes
    ok = line * 16 + b"\n"  # 993 bytes
    assert AGIBlockParser(max_block_bytes=len(ok)).feed(ok)
    with pytest.raises(LimitExceeded):
        AGIBlockParser(max_block_bytes=len(ok) - 1).feed(ok)
    parser = AGIBlockParser(max_block_bytes=1024)
    with pytest.raises(LimitExceeded):
        for _ in range(100):
            parser.feed(line)


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x01\x02\xff" * 100,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS hello
        b"agi_ok: 1\nfoo: bar\n",
    ],
)
def test_foreign_bytes_are_rejected_at_once(junk: bytes):
    with pytest.raises(ProtocolError):
        AGIBlockParser().feed(junk)


def test_line_without_colon_is_rejected():
    with pytest.raises(ProtocolError):
        AGIBlockParser().feed(b"agi_network\n")


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_arbitrary_bytes_never_crash_the_block_parser(chunks):
    parser = AGIBlockParser(max_line_bytes=256, max_block_bytes=1024)
    try:
        for chunk in chunks:
            parser.feed(chunk)
    except ProtocolError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parser.env.items())


@given(st.dictionaries(st.from_regex(r"[a-z_0-9]{1,12}", fullmatch=True), st.text(max_size=40).filter(
    lambda v: "\n" not in v and "\r" not in v)), st.integers(min_value=1, max_value=50))  # fmt: skip
def test_block_round_trip_with_random_chunking(fields, step):
    raw = "".join(f"agi_{k}: {v}\n" for k, v in fields.items()).encode() + b"\n"
    parser = AGIBlockParser(max_line_bytes=8192, max_block_bytes=1 << 20)
    done = False
    for i in range(0, len(raw), step):
        done = parser.feed(raw[i : i + step])
    assert done
    assert parser.env == fields


# -- replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data"),
    [
        ("200 result=1 (1795237838.1)", 200, "1", "1795237838.1"),
        ("200 result=0", 200, "0", None),
        ("200 result=1 ()", 200, "1", ""),
        ("200 result=-1", 200, "-1", None),
        ("200 result=6", 200, "6", None),
        ("200 result=1 (SIP 486 Busy Here)", 200, "1", "SIP 486 Busy Here"),
        ("200 result=1 (Local/s@agitest-00000000;2-s)", 200, "1", "Local/s@agitest-00000000;2-s"),
        ("200 result=1 (a(b)c) d)", 200, "1", "a(b)c) d"),
        ("200 result=1 (SIP 200 OK))", 200, "1", "SIP 200 OK)"),
        ("200 result= (timeout)", 200, "", "timeout"),
        ("200 result=1 (dtmf) endpos=1234", 200, "1", "dtmf"),
        ("200 result=0 endpos=24807", 200, "0", None),
        ("200 result=1 (unterminated", 200, "1", "unterminated"),
        ("510 Invalid or unknown command", 510, None, None),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, None, None),
        ("520 Invalid command syntax.  Proper usage not available.", 520, None, None),
        ("503 result=-2 Memory allocation failure", 503, "-2", None),
    ],
)
def test_reply_line_forms(line, code, result, data):
    reply = parse_reply_line(line)
    assert (reply.code, reply.result, reply.data, reply.text) == (code, result, data, line)


def _recorded_replies() -> list[str]:
    return sorted({ex.reply for ch in recorded_channels() for ex in ch.exchanges})


def test_every_recorded_reply_parses():
    replies = _recorded_replies()
    assert "511 Command Not Permitted on a dead channel or intercept routine" in replies
    assert "510 Invalid or unknown command" in replies
    for text in replies:
        reply = ReplyParser().feed_line(text)
        assert reply is not None and reply.text == text
        assert reply.code == int(text[:3])
        if text.startswith("200 result=1 ("):
            assert reply.result == "1" and reply.data == text[len("200 result=1 (") : -1]
        if text == "200 result=0":
            assert reply.data is None


@pytest.mark.parametrize("bad", ["hello", "20 result=1", "2000 result=1", "abc def", "200result=1"])
def test_lines_that_are_not_replies_raise(bad):
    with pytest.raises(ProtocolError):
        ReplyParser().feed_line(bad)


def test_multiline_520_is_one_reply():
    lines = [
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: GET VARIABLE <variablename>",
        "520 End of proper usage.",
    ]
    parser = ReplyParser()
    assert parser.feed_line(lines[0]) is None
    assert parser.feed_line(lines[1]) is None
    reply = parser.feed_line(lines[2])
    assert reply == AGIReply(520, None, None, "\n".join(lines))
    parser = ReplyParser()
    for line in ["520-Invalid command syntax.  Proper usage follows:", "HANGUP", "", "200 result=1 (x)"]:
        assert parser.feed_line(line) is None  # inside the usage text nothing is interpreted
    assert parser.feed_line("520 End of proper usage.").text.endswith("\n520 End of proper usage.")
    assert parser.hungup is False


def test_trying_is_skipped_and_hangup_is_noted_while_waiting():
    parser = ReplyParser()
    assert parser.feed_line("100 result=0 Trying...") is None
    assert parser.feed_line("HANGUP") is None
    assert parser.hungup is True
    assert parser.feed_line("") is None
    reply = parser.feed_line("200 result=0 Gosub complete")
    assert (reply.code, reply.result, reply.data) == (200, "0", None)
    assert parser.feed_line("200 result=1 (next)").data == "next"
    assert parser.hungup is True  # stays set


# -- routes --------------------------------------------------------------------------------------


def test_route_plain():
    r = parse_script("call_log")
    assert (r.route, r.tail, r.params, r.script) == ("call_log", "", {}, "call_log")


def test_route_with_query_string():
    r = parse_script("call_log?x=1&y=2&empty=&enc=a%20b")
    assert r.route == "call_log"
    assert r.tail == "?x=1&y=2&empty=&enc=a%20b"
    assert r.params == {"x": "1", "y": "2", "empty": "", "enc": "a b"}


def test_route_of_recorded_vicidial_hangup_scripts():
    for ch in recorded_channels():
        script = ch.env["network_script"]
        r = parse_script(script)
        assert r.script == script
        assert r.route in ("call_log", "amd_log", "agi_probe", "agi_probe_h")
        assert r.route + r.tail == script
        if "--HVcauses--" in script:
            assert r.tail.startswith("--HVcauses--PRI-----NODEBUG-----")
            assert r.tail.endswith(")")
            assert r.params == {}


def test_route_of_answered_call_hangup_script():
    script = "call_log--HVcauses--PRI-----NODEBUG-----16-----ANSWER-----3-----2-----SIP 200 OK)"
    r = parse_script(script)
    assert r.route == "call_log"
    assert r.tail.split("-----") == ["--HVcauses--PRI", "NODEBUG", "16", "ANSWER", "3", "2", "SIP 200 OK)"]


@pytest.mark.parametrize(
    ("script", "route", "tail"),
    [
        ("call_log/extra", "call_log", "/extra"),
        ("call_log,a,b", "call_log", ",a,b"),
        ("call_log with space", "call_log", " with space"),
        ("call-log--x", "call-log", "--x"),
        ("/call_log", "call_log", ""),
        ("", "", ""),
        ("--x", "", "--x"),
    ],
)
def test_route_separators(script, route, tail):
    r = parse_script(script)
    assert (r.route, r.tail) == (route, tail)


def test_script_falls_back_to_the_request_url():
    assert script_from_env({"request": "agi://127.0.0.1:4577/call_log?a=1"}) == "call_log?a=1"
    assert script_from_env({"network_script": "x", "request": "agi://h/y"}) == "x"
    assert script_from_env({"request": "/usr/lib/agi.php"}) == ""


# -- commands ------------------------------------------------------------------------------------


def test_command_bytes_end_with_lf_only():
    assert format_command("GET VARIABLE UNIQUEID") == b"GET VARIABLE UNIQUEID\n"
    assert format_command("VERBOSE \"h\u00e9\" 1") == 'VERBOSE "h\u00e9" 1\n'.encode()


@pytest.mark.parametrize("bad", ["NOOP\n", "NOOP\r", "SET VARIABLE X \"a\r\nb\"", "NOOP \x00"])
def test_command_with_line_breaks_is_refused(bad):
    with pytest.raises(ValueError):
        format_command(bad)


def test_command_length_limit_counts_bytes():
    assert len(format_command("N" * MAX_COMMAND_BYTES)) == MAX_COMMAND_BYTES + 1
    with pytest.raises(ValueError):
        format_command("N" * (MAX_COMMAND_BYTES + 1))
    with pytest.raises(ValueError):
        format_command("\u00e9" * (MAX_COMMAND_BYTES // 2 + 1))  # 2 bytes each in UTF-8


def test_set_variable_quotes_and_escapes():
    assert set_variable_command("TELEPHONYD_RESULT", "OK") == 'SET VARIABLE TELEPHONYD_RESULT "OK"'
    assert set_variable_command("X", 'a "b" \\c') == 'SET VARIABLE X "a \\"b\\" \\\\c"'
    assert set_variable_command("X", "") == 'SET VARIABLE X ""'
    assert quote("") == '""'


def test_get_commands_quote_only_when_needed():
    assert get_variable_command("CALLERID(num)") == "GET VARIABLE CALLERID(num)"
    assert get_full_variable_command("${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}") == (
        "GET FULL VARIABLE ${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}"
    )
    assert get_full_variable_command("${A} ${B}") == 'GET FULL VARIABLE "${A} ${B}"'


_safe_text = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=60)


@given(_safe_text, _safe_text)
def test_quoting_survives_asterisks_argument_splitter(name, value):
    """What we send is split by Asterisk's own parse_args() back into exactly our arguments."""
    assert parse_agi_args(set_variable_command(name, value)) == ["SET", "VARIABLE", name, value]
    assert parse_agi_args(get_variable_command(name)) == ["GET", "VARIABLE", name]
    assert parse_agi_args(get_full_variable_command(value)) == ["GET", "FULL", "VARIABLE", value]
