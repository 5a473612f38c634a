"""The hangup code table in the package maps every code the way the PHP relay really mapped it.

The relay's answers come from its recorded outputs (``tests/fixtures/ameyo-relay/corpus.jsonl``, one
one-phone callback per code with only ``hangupCauseCode`` set, family ``code``), not from a copy of
its table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telephonyd.ameyo.status import UNMAPPED_STATUS, attempt_status, hangup_causes

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "ameyo-relay" / "corpus.jsonl"
TABLE = hangup_causes()


def relay_status_by_code() -> dict[str, str | None]:
    """hangupCauseCode -> the errorInfo1 the relay sent for it alone (None: it sent nothing)."""
    out: dict[str, str | None] = {}
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        scenario = json.loads(line)
        if scenario["family"] not in ("code", "code_unknown"):
            continue
        (callback,) = scenario["callbacks"]
        code = dict(callback["query"])["hangupCauseCode"]
        sent = [r["json"]["predictiveCallCreateNotAnswer"]["errorInfo1"] for r in scenario["relay"]]
        out[code] = sent[0] if sent else None
    return out


RELAY = relay_status_by_code()


def test_the_table_has_the_relays_126_codes_and_each_was_run_through_the_relay():
    assert len(TABLE) == 126
    assert set(TABLE) <= set(RELAY)
    assert all(RELAY[code] is not None for code in TABLE)


@pytest.mark.parametrize("code", sorted(TABLE, key=int))
def test_each_code_maps_as_the_relay(code):
    status, source = attempt_status({"hangupCauseCode": code}, TABLE)
    assert (status, source) == (RELAY[code], "hangupCauseCode")
    category, table_status = TABLE[code]
    assert category and status == ("PROVIDER_FAILURE_403" if code == "403" else table_status)


def test_codes_outside_the_table_are_forwarded_as_unknown_where_the_relay_sent_nothing():
    outside = [code.strip() for code, status in RELAY.items() if code.strip() not in TABLE]
    assert outside and all(RELAY[c] is None for c in RELAY if c.strip() not in TABLE)
    for code in outside:
        assert attempt_status({"hangupCauseCode": code}, TABLE) == (UNMAPPED_STATUS, "unmapped_hangupCauseCode")


def test_sit_codes_and_403_as_the_relay():
    assert [RELAY[c] for c in ("760", "761", "762", "763")] == ["ATTEMPT_FAILED", "NUMBER_FAILURE",
                                                                 "ATTEMPT_FAILED", "ATTEMPT_FAILED"]
    assert attempt_status({"hangupCauseCode": "403", "systemDisposition": "PROVIDER_FAILURE"}, TABLE)[0] == \
        "PROVIDER_FAILURE_403"
