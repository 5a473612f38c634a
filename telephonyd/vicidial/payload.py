"""The DID Optimizer payload of one VICIdial disposition (pure).

Two kinds of report reach ``POST /api/v1/call-results`` (``report`` says which):

- ``"outcome"``: the FastAGI hangup outcome of one call leg (``telephonyd.calllog.payload``),
  ``disposition`` = Dial()'s status, sent once per uniqueid when the call ends.
- ``"disposition"``: this module's, one per distinct final VICIdial status of a call (the agent's
  SALE, NI, DNC... or the dialer's NA, B, DROP...), read from ``vicidial_log`` (outbound) or
  ``vicidial_closer_log`` (inbound). It names the same call as the outcome, resolved as the DID
  Optimizer's own reporter does (by uniqueid, else the call's lead within minutes; see
  `telephonyd.vicidial.ledger.resolve_uniqueid`). ``outcomeReported`` tells whether this daemon
  already queued the hangup outcome under that uniqueid (then this report updates it and adds no
  call).

Field names follow the DID Optimizer's batch sync (``upstreams.md``, ``vicidial.md``), plus
``didUsed``/``didSource`` and ``statusFlags`` (the VICIdial status's flags from
``vicidial_campaign_statuses``, else ``vicidial_statuses``; all False with ``statusKnown: false``
for a status neither table lists).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The flag columns of ``vicidial_statuses`` / ``vicidial_campaign_statuses`` (ENUM 'Y','N').
STATUS_FLAGS: tuple[str, ...] = (
    "sale",
    "human_answered",
    "dnc",
    "customer_contact",
    "not_interested",
    "unworkable",
    "scheduled_callback",
    "completed",
    "answering_machine",
)

REPORT_DISPOSITION = "disposition"
DID_FROM_DIAL_LOG = "vicidial_dial_log"
DID_NONE = "none"

LOG = "vicidial_log"
CLOSER_LOG = "vicidial_closer_log"

_CID_NUMBER = re.compile(r"<\s*\+?([0-9*#]+)\s*>")
_DIGITS = re.compile(r"\+?([0-9]{3,})")  # a bare number


@dataclass(frozen=True, slots=True)
class DialMatch:
    """The ``vicidial_dial_log`` row of a call: the DID presented and the dialed leg's uniqueid."""

    did: str
    caller_code: str
    uniqueid: str


def did_of(outbound_cid: str | None) -> str:
    """The number of a ``vicidial_dial_log.outbound_cid`` (``"V1121..." <3125551212>`` or a bare
    number); ``''`` when it holds none. A leading ``+`` is dropped, as the DID Optimizer scripts do."""
    text = (outbound_cid or "").strip()
    if "<" in text:  # name <number>: only the number part counts (the name is VICIdial's caller code)
        match = _CID_NUMBER.search(text)
        return match.group(1) if match else ""
    match = _DIGITS.fullmatch(text)
    return match.group(1) if match else ""


def flags_of(row: Mapping[str, Any] | None) -> dict[str, bool]:
    return {name: bool(row) and str(row.get(name) or "N").upper() == "Y" for name in STATUS_FLAGS}


def call_key(table: str, row: Mapping[str, Any]) -> str:
    """The call's key in its table: ``uniqueid`` (vicidial_log) or ``closecallid`` (closer log)."""
    return str(row["closecallid"] if table == CLOSER_LOG else row["uniqueid"])


def outbox_key(table: str, row: Mapping[str, Any], status: str) -> str:
    """Idempotency key of one reported status: ``vicidial:<uniqueid>:<status>`` (outbound) or
    ``vicidial_closer:<closecallid>:<status>`` (inbound)."""
    prefix = "vicidial_closer" if table == CLOSER_LOG else "vicidial"
    return f"{prefix}:{call_key(table, row)}:{status}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def date_text(value: Any) -> str:
    """A DATETIME as ``YYYY-MM-DD HH:MM:SS`` (VICIdial's server local time, as stored)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return _text(value)[:19]


def build_payload(
    table: str,
    row: Mapping[str, Any],
    *,
    flags: Mapping[str, bool] | None,
    dial: DialMatch | None,
    outcome_reported: bool,
    timestamp: int,
    uniqueid: str | None = None,
    source: str = "telephonyd-vicidial",
) -> dict[str, Any]:
    """The JSON body for one final status of one call.

    ``row``: the ``vicidial_log`` / ``vicidial_closer_log`` row (column names as in VICIdial's
    schema). ``phoneNumber`` is the DID presented (``didUsed``) when ``vicidial_dial_log`` names
    one, else the customer's number with ``didSource: "none"`` (the API requires the field);
    ``customerPhone`` is always the customer's number. ``duration`` is ``length_in_sec`` (0 for an
    unanswered call). ``timestamp``: epoch seconds of the report. ``uniqueid``: the uniqueid naming
    the call (`ledger.resolve_uniqueid`); default: the dial log's leg, else the row's.
    """
    status = _text(row.get("status")).strip().upper()
    did = dial.did if dial and dial.did else ""
    own = _text(row.get("uniqueid"))
    resolved = uniqueid or (dial.uniqueid if dial and dial.uniqueid else own)
    payload: dict[str, Any] = {
        "report": REPORT_DISPOSITION,
        "uniqueid": resolved,
        "vicidialUniqueid": own,
        "phoneNumber": did or _text(row.get("phone_number")),
        "didUsed": did or None,
        "didSource": DID_FROM_DIAL_LOG if did else DID_NONE,
        "customerPhone": _text(row.get("phone_number")),
        "phoneCode": _text(row.get("phone_code")),
        "campaignId": _text(row.get("campaign_id")) or "DEFAULT",
        "disposition": status,
        "statusFlags": dict(flags) if flags is not None else flags_of(None),
        "statusKnown": flags is not None,
        "duration": max(0, _int(row.get("length_in_sec"))),
        "agentId": _text(row.get("user")) or "0",
        "userGroup": _text(row.get("user_group")),
        "leadId": _text(row.get("lead_id")),
        "listId": _text(row.get("list_id")),
        "termReason": _text(row.get("term_reason")),
        "comments": _text(row.get("comments")),
        "calledCount": _int(row.get("called_count")),
        "callDate": date_text(row.get("call_date")),
        "startEpoch": _int(row.get("start_epoch")),
        "endEpoch": _int(row.get("end_epoch")),
        "direction": "inbound" if table == CLOSER_LOG else "outbound",
        "vicidialTable": table,
        "callerCode": dial.caller_code if dial else "",
        "outcomeReported": outcome_reported,
        "timestamp": int(timestamp),
        "source": source,
    }
    if table == CLOSER_LOG:
        payload["closecallid"] = _int(row.get("closecallid"))
        payload["queueSeconds"] = float(row.get("queue_seconds") or 0)
    else:
        payload["altDial"] = _text(row.get("alt_dial"))
    return payload
