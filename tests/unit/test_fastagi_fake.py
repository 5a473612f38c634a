"""The fake Asterisk must answer like the real one: checked against every recorded exchange."""

from __future__ import annotations

import pytest

from tests.conftest import ASTERISK_FIXTURES
from telephonyd.fastagi.protocol import SENT_COMMANDS
from tests.fakes.agi import (
    form_key,
    REPLY_510,
    REPLY_511,
    REPLY_520,
    FakeChannel,
    UnrecordedCommand,
    parse_agi_args,
    recorded_channels,
    recorded_forms,
)

CHANNELS = recorded_channels()


@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.name)
def test_fake_answers_every_recorded_command_as_recorded(channel: FakeChannel):
    chan = channel.copy()
    assert chan.exchanges
    for index, exchange in enumerate(chan.exchanges, 1):
        if index == chan.hangup_before_command:
            chan.dead = True
        assert "\n".join(chan.answer(exchange.command)) == exchange.reply, exchange.command


def test_recordings_cover_the_expected_sessions():
    names = [c.name for c in CHANNELS]
    assert len(names) == 25  # 15 VICIdial-style, 6 plain, 4 lab (live and h, twice)
    assert sum(1 for c in CHANNELS if c.hangup_before_command is not None) == 4
    start_08 = FakeChannel.from_recording(
        ASTERISK_FIXTURES / "vicidial" / "08_CALLER_HANGUP_DURING_START_agi1_START_4577.txt"
    )
    assert start_08.hangup_before_command == 0
    assert all(ex.after_hangup for ex in start_08.exchanges)


def test_variables_derived_from_a_recording():
    chan = FakeChannel.from_recording(ASTERISK_FIXTURES / "vicidial" / "02_BUSY_agi2_h-vicidial_4577.txt")
    assert chan.dead is True  # h extension
    assert chan.variables["DIALSTATUS"] == "BUSY"
    assert chan.variables["HANGUPCAUSE"] == "17"
    assert "AMDSTATUS" not in chan.variables  # recorded 200 result=0
    assert chan.variables["DIALEDTIME"] == ""  # recorded 200 result=1 ()
    keys = chan.variables["HANGUPCAUSE_KEYS()"]
    assert chan.variables[f"HANGUPCAUSE({keys},tech)"] == "SIP 486 Busy Here"
    assert chan.env_block == (ASTERISK_FIXTURES / "vicidial" / "02_BUSY_agi2_h-vicidial_4577.env.raw").read_bytes()


def test_set_before_get_in_a_recording_is_not_an_initial_value():
    chan = next(c for c in CHANNELS if c.name == "local_originate_1")
    assert "CALL_LOG_SEEN" not in chan.variables


def test_full_variable_expansion():
    chan = FakeChannel.synthetic(
        {"A": "abcdef", "B": "A", "K()": "PJSIP/1011-1", "HANGUPCAUSE(PJSIP/1011-1,tech)": "SIP 603 Declined"}
    )
    assert chan.expand("${A}") == "abcdef"
    assert chan.expand("${${B}}") == "abcdef"
    assert chan.expand("${HANGUPCAUSE(${K()},tech)}") == "SIP 603 Declined"
    assert chan.expand("x${NOPE}y") == "xy"
    assert chan.expand("${A:2}|${A:1:2}|${A:-2}|${A:0:-2}|${A:10}") == "cdef|bc|ef|abcd|"
    assert chan.expand("${CHANNEL}-${EXTEN}") == "PJSIP/1010-00000001-915555550001"
    assert chan.expand("$A ${") == "$A "


def test_get_variable_set_unset_and_empty():
    chan = FakeChannel.synthetic({"EMPTY": ""})
    assert chan.answer("GET VARIABLE EMPTY") == ["200 result=1 ()"]
    assert chan.answer("GET VARIABLE MISSING") == ["200 result=0"]
    assert chan.answer('SET VARIABLE MISSING "a b"') == ["200 result=1"]
    assert chan.answer("GET VARIABLE MISSING") == ["200 result=1 (a b)"]
    assert chan.answer("get variable MISSING") == ["200 result=1 (a b)"]  # command words: any case
    assert chan.answer("GET FULL VARIABLE ${NOTHING}") == ["200 result=1 ()"]


def test_unknown_usage_and_dead_channel_rules():
    chan = FakeChannel.synthetic()
    assert chan.answer("BOGUS COMMAND") == [REPLY_510]
    assert chan.answer("GET VARIABLE") == [REPLY_520]  # one line on 22.10.1, not the usage text
    assert chan.answer("CHANNEL STATUS") == ["200 result=6"]
    assert chan.answer("NOOP") == ["200 result=0"]
    chan.dead = True
    assert chan.answer("CHANNEL STATUS") == [REPLY_511]
    assert chan.answer("ANSWER") == [REPLY_511]
    assert chan.answer("STREAM FILE beep \"\"") == [REPLY_511]
    assert chan.answer("GET VARIABLE CHANNEL") == ["200 result=1 (PJSIP/1010-00000001)"]
    assert chan.answer('VERBOSE "x" 1') == ["200 result=1"]
    assert chan.answer("BOGUS") == [REPLY_510]


def test_h_extension_is_dead_from_the_start():
    assert FakeChannel.synthetic(extension="h").dead is True
    assert FakeChannel.synthetic().dead is False


def test_synthetic_block_has_asterisk_field_order_and_args():
    chan = FakeChannel.synthetic(script="call_log?x=1", args=["BUSY", "17"], env={"accountcode": "acc"})
    lines = chan.env_block.decode().split("\n")
    assert lines[0] == "agi_network: yes"
    assert lines[1] == "agi_network_script: call_log?x=1"
    assert lines[2] == "agi_request: agi://127.0.0.1:4573/call_log?x=1"
    assert chan.env_block.endswith(b"agi_arg_1: BUSY\nagi_arg_2: 17\n\n")
    assert chan.env["accountcode"] == "acc"


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ('SET VARIABLE X "a b"', ["SET", "VARIABLE", "X", "a b"]),
        ("SET VARIABLE X a\\ b", ["SET", "VARIABLE", "X", "a b"]),
        ('SET VARIABLE X ""', ["SET", "VARIABLE", "X", ""]),
        ('SET VARIABLE X "a\\"b"', ["SET", "VARIABLE", "X", 'a"b']),
        ('SET VARIABLE X ab"c d"e', ["SET", "VARIABLE", "X", "abc de"]),
        ("GET  VARIABLE\tX", ["GET", "VARIABLE", "X"]),
        ("NOOP ", ["NOOP"]),
    ],
)
def test_argument_splitting_follows_res_agi(line, argv):
    assert parse_agi_args(line) == argv


@pytest.mark.parametrize("line", ["HANGUP", "GOSUB sub s 1", "DATABASE GET fam key", "EXEC NoSuchApp x", "ANSWER",
                                  "STREAM FILE beep \"\"", "NOTACOMMAND here"])
def test_the_fake_fails_the_test_on_a_command_asterisk_never_answered_so(line: str) -> None:
    """No recording shows these on a live channel: no reply is invented, the test fails."""
    with pytest.raises(UnrecordedCommand, match="no recording"):
        FakeChannel.synthetic().answer(line)


def test_a_reply_form_recorded_only_on_a_live_channel_is_not_given_on_a_dead_one() -> None:
    chan = FakeChannel.synthetic(extension="h")
    with pytest.raises(UnrecordedCommand, match="dead"):
        chan.answer("NOOP")


@pytest.mark.parametrize("command", SENT_COMMANDS)
@pytest.mark.parametrize("dead", [False, True], ids=["live", "dead"])
def test_every_command_the_daemon_sends_has_recorded_replies_live_and_dead(command: str, dead: bool) -> None:
    """The commands come from the code (``SENT_COMMANDS``, enforced by ``AGISession.command``)."""
    key = form_key(command.split())
    assert recorded_forms().get((key, dead)), f"no recorded reply of a real Asterisk to {command} ({dead=})"
