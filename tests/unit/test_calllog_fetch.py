"""Reading many channel values with one GET FULL VARIABLE, and the one-by-one fallback."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from telephonyd.calllog import constants as c
from telephonyd.calllog.fetch import chunks, command_line, expression, fetch_values, split_reply
from telephonyd.errors import ProtocolError


@dataclass
class Reply:
    code: int
    result: str | None
    data: str | None
    text: str = ""


class Channel:
    """An in-memory channel that answers like res_agi.c: GET FULL VARIABLE expands ${...}."""

    def __init__(self, variables: dict[str, str], *, full_reply: Reply | None = None, fail_after: int | None = None):
        self.variables = variables
        self.full_reply = full_reply
        self.fail_after = fail_after
        self.lines: list[str] = []

    def _sent(self, line: str) -> None:
        if self.fail_after is not None and len(self.lines) >= self.fail_after:
            raise ConnectionResetError("peer closed")
        self.lines.append(line)

    def expand(self, expr: str) -> str:
        inner = re.compile(r"\$\{([^${}]*)\}")
        while True:
            expanded = inner.sub(lambda m: self.variables.get(m.group(1), ""), expr)
            if expanded == expr:
                return expr
            expr = expanded

    async def command(self, line: str) -> Reply:
        self._sent(line)
        match = re.fullmatch(r'GET FULL VARIABLE "(.*)"', line, re.DOTALL)
        assert match, line
        if self.full_reply is not None:
            return self.full_reply
        return Reply(200, "1", self.expand(match.group(1)))

    async def get_variable(self, name: str) -> str | None:
        self._sent(f"GET VARIABLE {name}")
        return self.variables.get(name)


VARIABLES = {
    "DIALSTATUS": "BUSY",
    "HANGUPCAUSE": "17",
    "CALLERID(num)": "1010",
    "HANGUPCAUSE_KEYS()": "PJSIP/1011-00000004",
    "HANGUPCAUSE(PJSIP/1011-00000004,tech)": "SIP 486 Busy Here",
    "campaign_id": "TESTCAMP",
}
NAMES = ["DIALSTATUS", "HANGUPCAUSE", "DIALEDTIME", c.TECH_CAUSE_EXPR, "CALLERID(num)", "campaign_id"]
EXPECTED = {
    "DIALSTATUS": "BUSY",
    "HANGUPCAUSE": "17",
    "DIALEDTIME": "",
    c.TECH_CAUSE_EXPR: "SIP 486 Busy Here",
    "CALLERID(num)": "1010",
    "campaign_id": "TESTCAMP",
}


def test_command_line_is_one_quoted_argument_without_blanks() -> None:
    line = command_line(["DIALSTATUS", "CALLERID(num)", c.TECH_CAUSE_EXPR])
    assert line == (
        'GET FULL VARIABLE "${DIALSTATUS}\x1f${CALLERID(num)}\x1f${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}"'
    )
    quoted = line[len("GET FULL VARIABLE ") :]
    assert " " not in quoted and "\t" not in quoted and "\n" not in quoted
    assert "\x1f".join(["a", "b"]).splitlines() == ["a\x1fb"]  # not a line break to Python


def test_chunks_bound_each_expression() -> None:
    names = [f"VARIABLE_{i:03d}" for i in range(200)]
    parts = chunks(names, max_chars=200)
    assert [n for part in parts for n in part] == names
    assert all(len(expression(part)) <= 200 for part in parts)
    assert len(parts) > 1
    assert chunks(["X" * 500], max_chars=100) == [["X" * 500]]


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        (Reply(200, "1", "a\x1fb\x1fc"), True),
        (Reply(200, "1", "a\x1fb"), False),  # a part is missing (truncated expansion)
        (Reply(200, "1", "a\x1fb\x1fc\x1fd"), False),  # a value held the separator
        (Reply(200, "0", None), False),
        (Reply(510, None, None), False),
        (Reply(520, None, None), False),
    ],
)
def test_split_reply(reply: Reply, ok: bool) -> None:
    values = split_reply(["A", "B", "C"], reply)
    assert (values == {"A": "a", "B": "b", "C": "c"}) if ok else values is None


def test_split_reply_single_empty_value() -> None:
    assert split_reply(["A"], Reply(200, "1", "")) == {"A": ""}
    assert split_reply(["A"], Reply(200, "1", None)) == {"A": ""}


async def test_one_command_reads_everything() -> None:
    channel = Channel(VARIABLES)
    fetched = await fetch_values(channel, NAMES)
    assert fetched.values == EXPECTED
    assert fetched.method == "full" and fetched.commands == 1
    assert channel.lines == [command_line(NAMES)]


async def test_many_names_take_several_commands_and_keep_every_value() -> None:
    names = [f"V{i}" for i in range(300)]
    channel = Channel({n: n.lower() for n in names})
    fetched = await fetch_values(channel, names)
    assert fetched.values == {n: n.lower() for n in names}
    assert fetched.commands == len(channel.lines) > 1
    assert all(len(line) < 1100 for line in channel.lines)


@pytest.mark.parametrize(
    "bad", [Reply(510, None, None, "510 Invalid or unknown command"), Reply(200, "1", "only\x1ftwo")]
)
async def test_unusable_reply_falls_back_to_get_variable(bad: Reply) -> None:
    channel = Channel(VARIABLES, full_reply=bad)
    fetched = await fetch_values(channel, NAMES)
    assert fetched.values == EXPECTED
    assert fetched.method == "fallback"
    assert channel.lines[1:] == [
        "GET VARIABLE DIALSTATUS",
        "GET VARIABLE HANGUPCAUSE",
        "GET VARIABLE DIALEDTIME",
        "GET VARIABLE HANGUPCAUSE_KEYS()",
        "GET VARIABLE HANGUPCAUSE(PJSIP/1011-00000004,tech)",
        "GET VARIABLE CALLERID(num)",
        "GET VARIABLE campaign_id",
    ]
    assert fetched.commands == 8


async def test_fallback_without_dialed_leg_reads_no_tech_cause() -> None:
    channel = Channel({"DIALSTATUS": ""}, full_reply=Reply(510, None, None))
    fetched = await fetch_values(channel, [c.TECH_CAUSE_EXPR])
    assert fetched.values == {c.TECH_CAUSE_EXPR: ""}
    assert channel.lines[1:] == ["GET VARIABLE HANGUPCAUSE_KEYS()"]


async def test_no_fallback_when_not_wanted() -> None:
    channel = Channel(VARIABLES, full_reply=Reply(510, None, None))
    fetched = await fetch_values(channel, NAMES, fallback=False)
    assert fetched.values == {} and fetched.method == "failed"
    assert len(channel.lines) == 1


async def test_connection_failure_returns_what_was_read() -> None:
    channel = Channel(VARIABLES, fail_after=0)
    fetched = await fetch_values(channel, NAMES)
    assert fetched.values == {} and fetched.method == "failed"
    assert "ConnectionResetError" in (fetched.error or "")

    channel = Channel(VARIABLES, full_reply=Reply(510, None, None), fail_after=3)
    fetched = await fetch_values(channel, NAMES)
    assert fetched.values == {"DIALSTATUS": "BUSY", "HANGUPCAUSE": "17"}
    assert fetched.method == "failed"


async def test_protocol_error_stops_the_fallback() -> None:
    class Broken(Channel):
        async def get_variable(self, name: str) -> str | None:
            raise ProtocolError("511 Command Not Permitted")

    fetched = await fetch_values(Broken(VARIABLES, full_reply=Reply(510, None, None)), NAMES)
    assert fetched.method == "failed" and fetched.values == {}


async def test_no_names_no_command() -> None:
    channel = Channel(VARIABLES)
    fetched = await fetch_values(channel, [])
    assert fetched.commands == 0 and channel.lines == []
