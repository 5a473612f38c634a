"""The fake Asterisk against the real one for ``did_select``: every command telephonyd sent in the
recorded sessions (Asterisk 22.10.1, ``tests/fixtures/asterisk-22.10.1/did_select``) gets the reply
the real Asterisk gave, and the callee's INVITE carries the caller id that the session set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fakes.agi import FIXTURES, FakeChannel

DIR: Path = FIXTURES / "did_select"
_LINE = re.compile(r"AGI (Rx <<|Tx >>) (.*)$")


def did_select_exchanges(name: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The ``agi_*`` fields and (command, reply) pairs of the recording's did_select session."""
    env: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    inside = False
    command: str | None = None
    for raw in (DIR / f"{name}_agi.log").read_text(encoding="utf-8").splitlines():
        match = _LINE.search(raw)
        if "agi_network_script: did_select" in raw:
            inside = True
        if not inside:
            continue
        if "did_select completed" in raw:
            break
        if match is None:
            continue
        way, text = match.groups()
        if way == "Tx >>" and text.startswith("agi_"):
            key, _, value = text.partition(": ")
            env[key[4:]] = value
        elif way == "Rx <<":
            command = text
        elif command is not None:
            pairs.append((command, text))
            command = None
    return env, pairs


@pytest.mark.parametrize("name", ["success", "api_down", "mset"])
def test_the_fake_answers_every_recorded_command_as_asterisk_did(name: str) -> None:
    env, pairs = did_select_exchanges(name)
    assert env["network_script"] == "did_select" and pairs
    fake = FakeChannel.synthetic(
        {"campaign_id": "I15CAMP"}, script="did_select", uniqueid=env["uniqueid"], channel=env["channel"],
        callerid=env["callerid"], calleridname=env["calleridname"], extension=env["extension"],
    )  # fmt: skip
    for command, reply in pairs:
        assert fake.answer(command) == [reply], command


def invite_from_user(name: str) -> str:
    text = (DIR / f"{name}_invite.txt").read_text(encoding="utf-8")
    match = re.search(r"^From: .*<sip:([^@>]+)@", text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_the_invite_carries_the_caller_id_the_session_set() -> None:
    _env, pairs = did_select_exchanges("success")
    (callerid,) = [c.split(" ", 3)[3].strip('"') for c, _ in pairs if c.startswith("SET VARIABLE CALLERID(num) ")]
    assert callerid == "14155550177" == invite_from_user("success")
    env, pairs = did_select_exchanges("api_down")
    assert [c for c, _ in pairs if c.startswith("SET VARIABLE")] == ['SET VARIABLE OPTIMIZER_STATUS "FAILURE"',
                                                                    'SET VARIABLE TELEPHONYD_RESULT "FAILED"']  # fmt: skip
    assert invite_from_user("api_down") == env["callerid"] == "5550001111"


def test_one_exec_mset_sets_the_caller_id_as_set_variable_does() -> None:
    env, pairs = did_select_exchanges("mset")
    (mset, reply) = pairs[0]
    assert mset.startswith("EXEC MSet ") and reply == "200 result=0"
    fake = FakeChannel.synthetic(script="did_select", callerid=env["callerid"])
    fake.answer(mset)
    assert fake.variables["CALLERID(num)"] == "14155550178" == invite_from_user("mset")
    assert (fake.variables["OPTIMIZER_DID"], fake.variables["OPTIMIZER_STATUS"], fake.variables["OPTIMIZER_FALLBACK"]) == (
        "14155550178", "SUCCESS", "NO")
