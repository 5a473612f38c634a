"""The VICIdial disposition payload and the config rules around VICIdial (pure)."""

from __future__ import annotations

from datetime import datetime

import pytest

from telephonyd.config import ConfigError, validate
from telephonyd.vicidial.payload import CLOSER_LOG, LOG, DialMatch, build_payload, did_of, flags_of, outbox_key

ROW = {
    "uniqueid": "1764650000.123", "lead_id": 42, "list_id": 1001, "campaign_id": "SOLDCAMP",
    "call_date": datetime(2026, 12, 2, 6, 40, 1), "start_epoch": 1764657601, "end_epoch": 1764657661,
    "length_in_sec": 60, "status": "sold", "phone_code": "1", "phone_number": "5555550042", "user": "6666",
    "comments": "AUTO", "user_group": "AGENTS", "term_reason": "AGENT", "called_count": 2, "alt_dial": "MAIN",
}


@pytest.mark.parametrize(("cid", "did"), [
    ('"V1202064001000000042" <3125550101>', "3125550101"),
    ("<+13125550101>", "13125550101"),
    ("3125550101", "3125550101"),
    ("+3125550101", "3125550101"),
    ("", ""),
    (None, ""),
    ('"V1202064001000000042" <>', ""),
])
def test_did_of_outbound_cid(cid, did) -> None:
    assert did_of(cid) == did


def test_flags_come_from_the_status_tables_not_the_status_name() -> None:
    flags = flags_of({"sale": "Y", "human_answered": "Y", "dnc": "N"})
    payload = build_payload(LOG, ROW, flags=flags, dial=DialMatch("3125550101", "V1202064001000000042", "1764650000.130"),
                            outcome_reported=True, timestamp=1764657700)
    assert payload["disposition"] == "SOLD" and payload["statusFlags"]["sale"] is True
    assert payload["statusKnown"] is True and payload["statusFlags"]["dnc"] is False
    assert payload["uniqueid"] == "1764650000.130" and payload["vicidialUniqueid"] == "1764650000.123"
    assert payload["phoneNumber"] == payload["didUsed"] == "3125550101"
    assert payload["customerPhone"] == "5555550042" and payload["callDate"] == "2026-12-02 06:40:01"
    assert payload["report"] == "disposition" and payload["altDial"] == "MAIN" and "closecallid" not in payload


def test_unknown_status_and_no_dial_row() -> None:
    row = {**ROW, "length_in_sec": None, "user": "", "campaign_id": "", "status": "XYZ"}
    payload = build_payload(LOG, row, flags=None, dial=None, outcome_reported=False, timestamp=1)
    assert payload["statusKnown"] is False and not any(payload["statusFlags"].values())
    assert payload["didUsed"] is None and payload["didSource"] == "none"
    assert payload["phoneNumber"] == "5555550042"  # required by the API; didSource says it is no DID
    assert payload["duration"] == 0 and payload["agentId"] == "0" and payload["campaignId"] == "DEFAULT"
    assert payload["uniqueid"] == ROW["uniqueid"]


def test_closer_rows_are_keyed_by_closecallid() -> None:
    row = {**ROW, "closecallid": 77, "queue_seconds": 3.5, "status": "CALLBK"}
    payload = build_payload(CLOSER_LOG, row, flags=None, dial=None, outcome_reported=False, timestamp=1)
    assert payload["closecallid"] == 77 and payload["direction"] == "inbound" and payload["queueSeconds"] == 3.5
    assert outbox_key(CLOSER_LOG, row, "CALLBK") == "vicidial_closer:77:CALLBK"
    assert outbox_key(LOG, ROW, "SALE") == "vicidial:1764650000.123:SALE"


@pytest.mark.parametrize("section", [{"enabled": True, "url": "mysql+aiomysql://ro:pw@db/asterisk"},
                                     {"fastagi_log_present": True}])
def test_telephonyd_never_takes_fastagi_log_port(section) -> None:
    with pytest.raises(ConfigError, match="4577"):
        validate({"fastagi": {"listen": ["127.0.0.1:4573", "127.0.0.1:4577"]}, "vicidial": section})
    validate({"fastagi": {"listen": "127.0.0.1:4573"}, "vicidial": section})


def test_vicidial_source_needs_a_url_and_a_mysql_driver() -> None:
    with pytest.raises(ConfigError, match="vicidial.url"):
        validate({"vicidial": {"enabled": True}})
    with pytest.raises(ConfigError) as info:
        validate({"vicidial": {"enabled": True, "url": "sqlite+aiosqlite:///x.db"}})
    assert info.value.path == "vicidial.url"
    assert validate({}).vicidial.enabled is False


def test_the_disposition_names_the_call_its_outcome_used() -> None:
    from telephonyd.vicidial.ledger import resolve_uniqueid

    # By uniqueid first, then the dial log's leg of the same lead, as the optimizer's reporter does.
    assert resolve_uniqueid(("1.1", "1.2"), {"1.1", "1.2"}) == ("1.1", True)
    assert resolve_uniqueid(("1.1", "1.2"), {"1.2"}) == ("1.2", True)
    # No outcome queued (the source alone, or the outcome not yet in): the h-extension leg, else the row's.
    assert resolve_uniqueid(("1.1", "1.2"), set()) == ("1.2", False)
    assert resolve_uniqueid(("1.1", ""), set()) == ("1.1", False)
    payload = build_payload(LOG, ROW, flags=None, dial=DialMatch("3125550101", "V1", "1.2"), outcome_reported=True,
                            timestamp=1, uniqueid="1764650000.123")
    assert payload["uniqueid"] == payload["vicidialUniqueid"] == "1764650000.123" and payload["outcomeReported"]


def test_the_vicidial_password_is_a_secret() -> None:
    config = validate({"vicidial": {"enabled": True, "url": "mysql+aiomysql://ro:s3cret-pw@db:3306/asterisk"}})
    assert "s3cret-pw" not in str(config.masked()) and "s3cret-pw" in config.secrets()
