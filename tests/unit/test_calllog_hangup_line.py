"""Parsing what the dialplan hands over at hangup: VICIdial's HVcauses script name, the argument
form, VICIdial's caller code and the SIP status inside a tech cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telephonyd.calllog.hangup_line import (
    HangupFields,
    hangup_fields,
    is_hvcauses,
    lead_from_caller_code,
    parse_arguments,
    parse_hvcauses,
    sip_cause,
    strip_dangling_paren,
)
from tests.conftest import ASTERISK_FIXTURES

VICIDIAL = ASTERISK_FIXTURES / "vicidial"


def agi_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("agi_"):
            key, _, value = line.partition(": ")
            env[key[4:]] = value
    return env


# Every VICIdial hangup line recorded on Asterisk 22.10.1, with what it must yield.
RECORDED_HVCAUSES = {
    "01_ANSWER_agi2_h-vicidial_4577.env.raw": HangupFields("ANSWER", "16", "3", "2", "SIP 200 OK"),
    "02_BUSY_agi2_h-vicidial_4577.env.raw": HangupFields("BUSY", "17", "", "", "SIP 486 Busy Here"),
    "04_CHANUNAVAIL_agi2_h-vicidial_4577.env.raw": HangupFields("CHANUNAVAIL", "3", "", "", ""),
    "07_AMD_SILENCE_agi3_h-vicidial_4577.env.raw": HangupFields("ANSWER", "16", "", "", "SIP 200 OK"),
    "08_CALLER_HANGUP_DURING_START_agi2_h-vicidial_4577.env.raw": HangupFields("", "127", "", "", ""),
}


def test_every_recorded_hvcauses_line_is_covered() -> None:
    recorded = {
        p.name for p in VICIDIAL.glob("*.env.raw") if is_hvcauses(agi_env(p)["network_script"])
    }
    assert recorded == set(RECORDED_HVCAUSES)


@pytest.mark.parametrize("name", sorted(RECORDED_HVCAUSES))
def test_recorded_hvcauses_script_names(name: str) -> None:
    env = agi_env(VICIDIAL / name)
    assert env["extension"] == "h"
    assert parse_hvcauses(env["network_script"]) == RECORDED_HVCAUSES[name]
    # the request URL carries the same script after host:port/
    assert parse_hvcauses(env["request"].split("/", 3)[3]) == RECORDED_HVCAUSES[name]


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in VICIDIAL.glob("*.env.raw") if "HVcauses" not in p.read_text()),
)
def test_other_recorded_script_names_are_not_hvcauses(name: str) -> None:
    script = agi_env(VICIDIAL / name)["network_script"]
    assert not is_hvcauses(script)
    assert parse_hvcauses(script) == HangupFields()
    assert not parse_hvcauses(script).given


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # empty tech cause: only VICIdial's stray ')' is left
        ("call_log--HVcauses--PRI-----NODEBUG-----16-----NOANSWER---------------)", HangupFields("NOANSWER", "16")),
        # older VICIdial line: no tech cause, no stray ')'
        ("call_log--HVcauses--PRI-----NODEBUG-----16-----ANSWER-----12-----7", HangupFields("ANSWER", "16", "12", "7")),
        # missing fields after the dial status
        ("call_log--HVcauses--PRI-----NODEBUG-----34-----CONGESTION", HangupFields("CONGESTION", "34")),
        ("call_log--HVcauses--PRI-----NODEBUG-----", HangupFields()),
        ("call_log--HVcauses--", HangupFields()),
        # extra dashes (a run that is not a multiple of five) do not leak into the values
        (
            "call_log--HVcauses--PRI-----NODEBUG-----17------BUSY----------------SIP 486 Busy Here)",
            HangupFields("BUSY", "17", "", "", "SIP 486 Busy Here"),
        ),
        # fields beyond the seventh (a future VICIdial) are ignored
        (
            "call_log--HVcauses--PRI-----NODEBUG-----21-----CHANUNAVAIL---------------SIP 603 Decline-----X)",
            HangupFields("CHANUNAVAIL", "21", "", "", "SIP 603 Decline"),
        ),
        # a tech cause with its own balanced parentheses keeps them
        (
            "call_log--HVcauses--PRI-----NODEBUG-----34-----CONGESTION---------------SIP 503 Unavailable (overload)))",
            HangupFields("CONGESTION", "34", "", "", "SIP 503 Unavailable (overload)"),
        ),
        # marker in another letter case (VICIdial matches it case-insensitively)
        ("call_log--hvcauses--PRI-----NODEBUG-----127-----CANCEL---------------)", HangupFields("CANCEL", "127")),
    ],
)
def test_synthetic_hvcauses(script: str, expected: HangupFields) -> None:
    assert parse_hvcauses(script) == expected


_value = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=12)
_tech = st.from_regex(r"(SIP [1-6][0-9]{2}( [A-Za-z][A-Za-z ]{0,20}[A-Za-z])?)?", fullmatch=True)


@given(cause=_value, status=_value, dialed=_value, answered=_value, tech=_tech)
def test_hvcauses_round_trip(cause: str, status: str, dialed: str, answered: str, tech: str) -> None:
    # What Asterisk builds from VICIdial's line, doubled ')' included.
    script = f"call_log--HVcauses--PRI-----NODEBUG-----{cause}-----{status}-----{dialed}-----{answered}-----{tech})"
    assert parse_hvcauses(script) == HangupFields(status, cause, dialed, answered, tech)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["BUSY", "17"], HangupFields("BUSY", "17")),
        (["", "127"], HangupFields("", "127")),  # recording 08: DIALSTATUS unset
        (["ANSWER", "16", "3", "2", "SIP 200 OK"], HangupFields("ANSWER", "16", "3", "2", "SIP 200 OK")),
        ([" NOANSWER ", "16"], HangupFields("NOANSWER", "16")),
        ([], HangupFields()),
    ],
)
def test_argument_form(args: list[str], expected: HangupFields) -> None:
    assert parse_arguments(args) == expected


def test_script_values_and_arguments_merge_script_first() -> None:
    fields = hangup_fields(
        "call_log--HVcauses--PRI-----NODEBUG-----16-----ANSWER---------------)", ["NOANSWER", "19", "9", "4"]
    )
    assert fields == HangupFields("ANSWER", "16", "9", "4", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SIP 486 Busy Here)", "SIP 486 Busy Here"),
        (")", ""),
        ("(a))", "(a)"),
        ("(a)", "(a)"),
        ("SIP 200 OK", "SIP 200 OK"),
        ("", ""),
    ],
)
def test_strip_dangling_paren(text: str, expected: str) -> None:
    assert strip_dangling_paren(text) == expected


@pytest.mark.parametrize(
    ("caller_id_name", "lead"),
    [
        ("V1121053000000012345", "12345"),  # recorded: VICIdial auto-dial caller code
        ("M1121053001234567890", "1234567890"),  # manual dial, 10-digit lead
        (" V1121053000000012345 ", "12345"),
        ("V1121053000000000000", ""),  # lead 0 is no lead
        ("Ext 1010", ""),
        ("V112105300000001234", ""),  # 19 characters
        ("V11210530000000123456", ""),  # 21 characters
        ("v1121053000000012345", ""),  # type letter is upper case
        ("V11210530000000123A5", ""),
        ("", ""),
    ],
)
def test_lead_from_caller_code(caller_id_name: str, lead: str) -> None:
    assert lead_from_caller_code(caller_id_name) == lead


@pytest.mark.parametrize(
    ("tech", "expected"),
    [
        ("SIP 486 Busy Here", (486, "Busy Here")),
        ("SIP 486 Busy Here)", (486, "Busy Here")),
        ("SIP 200 OK", (200, "OK")),
        ("SIP 503 Service Unavailable", (503, "Service Unavailable")),
        ("sip 404 Not Found", (404, "Not Found")),
        ("SIP 487", (487, "")),
        ("DAHDI 17", (None, "")),
        ("SIP abc", (None, "")),
        ("SIP 999 Nope", (None, "")),
        ("", (None, "")),
        (")", (None, "")),
    ],
)
def test_sip_cause(tech: str, expected: tuple[int | None, str]) -> None:
    assert sip_cause(tech) == expected
