"""The DID Optimizer's ``POST /api/v1/call-results`` body for one call leg (pure).

Field names and types are those the DID Optimizer's own hangup-time reporter sends (see
``shared/reference/upstreams.md``); the server maps ``dialStatus`` to its result enum.
"""

from __future__ import annotations

from typing import Any, Protocol

from .outcome import CallOutcome

#: Every key of the payload, in the order it is built.
PAYLOAD_FIELDS: tuple[str, ...] = (
    "uniqueid",
    "linkedid",
    "phoneNumber",
    "customerPhone",
    "campaignId",
    "dialStatus",
    "disposition",
    "duration",
    "dialedTime",
    "ringTime",
    "hangupCause",
    "hangupSource",
    "agentId",
    "leadId",
    "listId",
    "amdStatus",
    "amdCause",
    "sipHangupCause",
    "sipHangupReason",
    "timestamp",
    "source",
    "didUsed",
    "didSource",
    "report",
)

#: Keys added when the leg's caller id was chosen by ``did_select`` (after `PAYLOAD_FIELDS`).
SELECTION_FIELDS: tuple[str, ...] = ("didRequestId", "didSelection")


class DIDSelectionLike(Protocol):
    """What the report needs of a ``did_select`` decision (``telephonyd.didselect.Selection``)."""

    did: str | None
    request_id: str
    result: str


def build_payload(
    outcome: CallOutcome, *, source: str, timestamp: int, selection: DIDSelectionLike | None = None
) -> dict[str, Any]:
    """The JSON-ready body.

    ``duration`` is ANSWEREDTIME (s, 0 when the call was never bridged), ``dialedTime`` DIALEDTIME,
    ``ringTime`` their difference floored at 0, ``disposition`` repeats ``dialStatus`` (a dialer
    status belongs to batch syncs, not to this reporter), ``phoneNumber`` is the DID used as caller
    id and ``customerPhone`` the number dialed. ``timestamp`` is the report's epoch seconds.
    ``didUsed`` repeats the DID (``null`` when none is known) and ``didSource`` says where it came
    from: the channel variable (``OPTIMIZER_DID``, ``DID_NUMBER``), ``CALLERID(num)`` (no DID
    variable was set: the caller id, which may not be a pool DID) or ``none``. ``report`` is
    ``outcome`` (the hangup outcome; ``disposition`` reports come from ``telephonyd.vicidial``).

    With a ``selection`` (the leg asked ``did_select`` before Dial) ``didUsed`` is the DID it set as
    caller id (else the DID or caller id the leg had) and the `SELECTION_FIELDS` follow:
    ``didRequestId`` the ``X-Request-ID`` of its ``GET /api/v1/dids/next``, ``didSelection`` its
    result word (SELECTED, REUSED, FALLBACK, FAILED, DISABLED).
    """
    payload = {
        "uniqueid": outcome.uniqueid,
        "linkedid": outcome.linkedid,
        "phoneNumber": outcome.did,
        "customerPhone": outcome.customer_phone,
        "campaignId": outcome.campaign,
        "dialStatus": outcome.dial_status,
        "disposition": outcome.dial_status,
        "duration": outcome.answered_time_s,
        "dialedTime": outcome.dialed_time_s,
        "ringTime": max(0, outcome.dialed_time_s - outcome.answered_time_s),
        "hangupCause": outcome.hangup_cause,
        "hangupSource": outcome.hangup_source,
        "agentId": outcome.agent,
        "leadId": outcome.lead,
        "listId": outcome.list_id,
        "amdStatus": outcome.amd_status,
        "amdCause": outcome.amd_cause,
        "sipHangupCause": outcome.sip_cause,
        "sipHangupReason": outcome.sip_reason,
        "timestamp": int(timestamp),
        "source": source,
        "didUsed": outcome.did or None,
        "didSource": outcome.did_source,
        "report": "outcome",
    }
    if selection is not None:
        payload["didUsed"] = selection.did or outcome.did or None
        payload["didRequestId"] = selection.request_id
        payload["didSelection"] = selection.result
    return payload
