"""Pure rules of a DID selection: the query, the reply's verdict, the DID, the channel settings.

Facts from ``shared/reference/upstreams.md`` (the DID Optimizer's API and its dialplan scripts):

- ``GET /api/v1/dids/next`` takes ``campaign_id``, ``agent_id``, ``customer_phone``,
  ``customer_state``, ``customer_area_code``; ``X-Request-ID`` carries the Asterisk uniqueid.
- 200 ``{success:true, did:{number, description, carrier, location, is_fallback}, metadata}`` is a
  selection; an empty pool is a 500 with ``fallback:{number, is_fallback:true}``; bodies may be
  HTML or plain text, so nothing is assumed to be JSON.
- Their scripts strip a leading ``+`` for ``OPTIMIZER_DID`` and change ``CALLERID(num)`` only for
  a real DID of 10 or more digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..upstream.replies import excerpt, json_object
from . import constants as c

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class SelectionQuery:
    """What is known of the call when the DID is chosen (``''`` when unknown)."""

    campaign: str = ""
    agent: str = ""
    lead: str = ""
    customer_phone: str = ""
    state: str = ""
    area_code: str = ""

    def params(self) -> dict[str, str]:
        """The API's query fields, empty ones left out (the lead is not a field of the API)."""
        fields = {
            "campaign_id": self.campaign,
            "agent_id": self.agent,
            "customer_phone": self.customer_phone,
            "customer_state": self.state,
            "customer_area_code": self.area_code,
        }
        return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One reply judged. ``did`` is the normalized DID (digits, no ``+``) of a usable selection;
    ``reason`` is one of `constants.REASONS` when it is not usable; ``breaker_failure`` says whether
    the reply counts against the API's health (an empty pool or a 4xx does not: the API answered);
    ``is_fallback`` is the API's own flag; ``server_fallback`` the number of an empty-pool reply."""

    did: str | None
    is_fallback: bool = False
    reason: str | None = None
    breaker_failure: bool = False
    detail: str = ""
    server_fallback: str | None = None

    @property
    def ok(self) -> bool:
        return self.did is not None


def normalize_did(number: object) -> str | None:
    """The DID as the dialplan gets it: a leading ``+`` stripped, digits only, at least 10 of them.

    None for anything else (not a string, empty, letters, too short): such a DID never becomes
    the caller id.
    """
    if isinstance(number, int) and not isinstance(number, bool):
        number = str(number)
    if not isinstance(number, str):
        return None
    text = number.strip().removeprefix("+")
    if len(text) >= 10 and _DIGITS.fullmatch(text):
        return text
    return None


def area_code_of(phone: str) -> str:
    """The NANP area code of a phone number: the first three of its last ten digits (``''`` if fewer)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[-10:-7] if len(digits) >= 10 else ""


def judge(status: int, body: bytes) -> Verdict:
    """The verdict on one reply of ``GET /api/v1/dids/next``."""
    data = json_object(body)
    if 200 <= status < 300:
        if data is None or data.get("success") is not True or not isinstance(data.get("did"), dict):
            return Verdict(None, reason=c.REASON_MALFORMED, breaker_failure=True,
                           detail=f"HTTP {status}: {excerpt(body)}")  # fmt: skip
        did = data["did"]
        number = normalize_did(did.get("number"))
        if number is None:
            return Verdict(None, reason=c.REASON_INVALID_DID, detail=f"DID {excerpt(str(did.get('number')), 40)!r}")
        return Verdict(number, is_fallback=did.get("is_fallback") is True)
    if status >= 500:
        fallback = data.get("fallback") if data is not None else None
        if isinstance(fallback, dict):
            # The API's own fallback number is not used: the call keeps its caller id (or the
            # configured fallback); the number is kept in the detail for the record.
            number = normalize_did(fallback.get("number"))
            return Verdict(None, reason=c.REASON_EMPTY_POOL, detail=f"HTTP {status}: empty pool (API fallback {number})",
                           server_fallback=number)  # fmt: skip
        return Verdict(None, reason=c.REASON_HTTP_5XX, breaker_failure=True, detail=f"HTTP {status}: {excerpt(body)}")
    if 400 <= status < 500:
        return Verdict(None, reason=c.REASON_HTTP_4XX, detail=f"HTTP {status}: {excerpt(body)}")
    return Verdict(None, reason=c.REASON_MALFORMED, breaker_failure=True, detail=f"unexpected HTTP {status}")


def fallback_did(fallbacks: Mapping[str, str], campaign: str) -> str | None:
    """The configured fallback DID of ``campaign`` (else of ``"*"``), normalized; None when none."""
    number = fallbacks.get(campaign) if campaign else None
    if number is None:
        number = fallbacks.get(c.ANY_CAMPAIGN)
    return normalize_did(number) if number is not None else None


def channel_settings(did: str | None, *, status: str, fallback: bool) -> list[tuple[str, str]]:
    """The ``SET VARIABLE`` commands of one selection, in order.

    With a DID: ``OPTIMIZER_DID``, ``OPTIMIZER_STATUS``, ``OPTIMIZER_FALLBACK``, ``CALLERID(num)``
    (``did`` is already normalized: 10+ digits). Without: only ``OPTIMIZER_STATUS`` (FAILURE); the
    caller id is left alone.
    """
    if did is None:
        return [(c.OPTIMIZER_STATUS, status)]
    return [
        (c.OPTIMIZER_DID, did),
        (c.OPTIMIZER_STATUS, status),
        (c.OPTIMIZER_FALLBACK, c.YES if fallback else c.NO),
        (c.CALLERID_NUM, did),
    ]


#: Characters a value may not hold to go in one ``EXEC MSet`` (MSet splits on commas and strips
#: double quotes; AGI splits arguments on blanks and honours quotes and backslashes).
_MSET_UNSAFE = re.compile(r'[,"\\\s=]')


def mset_command(settings: list[tuple[str, str]]) -> str | None:
    """One ``EXEC MSet "A=1,B=2,..."`` line setting every pair, or None when a value cannot go in it.

    Asterisk 22.10.1 answers ``200 result=0`` and sets each variable as ``Set()`` would, dialplan
    functions included (``CALLERID(num)``); recorded in
    ``tests/fixtures/asterisk-22.10.1/did_select/mset_agi.log``. One AGI round trip instead of one
    per variable, while the call's thread waits.
    """
    if any(_MSET_UNSAFE.search(value) or not value for _name, value in settings):
        return None
    return 'EXEC MSet "' + ",".join(f"{name}={value}" for name, value in settings) + '"'
