"""Status of one Ameyo attempt, the phone list and the dial index, read the way the relay reads them (pure).

Source of the rules: the PHP relay this replaces (vijayprakash644/tops at cee29d1,
``src/index_handler.php`` and ``src/hangup_cause_map.php``), checked against its real output by the
differential test (``tests/fixtures/ameyo-relay``).

- Status: ``systemDisposition`` when non-empty, forwarded as Ameyo wrote it (any value, any case);
  otherwise ``hangupCauseCode`` through the relay's full table (`hangup_causes`, package data
  ``hangup_causes.tsv``: code -> category -> status; the code is looked up as written, so ``016`` is
  not ``16``). ``PROVIDER_FAILURE`` with code ``403`` becomes ``PROVIDER_FAILURE_403`` either way.
  A code outside the table with no disposition is forwarded as `UNMAPPED_STATUS` (decision: the
  relay sent nothing). Neither field: `CallbackRejected`.
- Phones: ``phoneList`` when it is JSON ``{"phoneList": [...]}``; entries become strings as PHP's
  ``strval`` makes them, empty and ``"0"`` entries are dropped, repeats removed. Anything else
  (not JSON, a bare list, no list) falls back to phone1, phone2, cstmPhone, then the dialled phone
  (decision: repeats removed here too).
- Dial index: PHP's ``is_numeric`` then integer cast (``1.5`` -> 1, ``1e0`` -> 1, ``abc`` -> 0);
  a negative index counts as absent (decision).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from importlib import resources

UNKNOWN = "UNKNOWN"
#: The status forwarded for a ``hangupCauseCode`` outside the table when ``systemDisposition`` is empty;
#: the relay itself writes ``UNKNOWN`` when it has no status for a phone.
UNMAPPED_STATUS = UNKNOWN
CONNECTED = "CONNECTED"

#: The statuses the relay lists as known (``allowed_system_dispositions``); others are forwarded too.
KNOWN_STATUSES = frozenset({
    "CONNECTED", "CALL_DROP", "CALL_HANGUP", "NO_ANSWER", "PROVIDER_FAILURE", "BUSY",
    "PROVIDER_TEMP_FAILURE", "NUMBER_FAILURE", "CALL_NOT_PICKED", "ATTEMPT_FAILED", "NUMBER_TEMP_FAILURE",
})

_PHP_NUMERIC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class CallbackRejected(ValueError):
    """The callback cannot be routed; ``field`` is the query parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def hangup_causes() -> dict[str, tuple[str, str]]:
    """The relay's table from the package data: ``{code: (category, status)}``, 126 codes.

    Raises `OSError` when the package data is missing (a broken install)."""
    text = resources.files(__package__).joinpath("hangup_causes.tsv").read_text(encoding="utf-8")
    rows = csv.reader(io.StringIO(text), delimiter="\t")
    return {r[0]: (r[1], r[2]) for r in rows if r and not r[0].startswith("#")}


def attempt_status(params: Mapping[str, str], table: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """(status, source) of this attempt; source is ``systemDisposition``, ``hangupCauseCode`` or
    ``unmapped_hangupCauseCode``. Raises `CallbackRejected` when both fields are empty."""
    code = params.get("hangupCauseCode", "")
    disposition = params.get("systemDisposition", "")
    if disposition:
        status, source = disposition, "systemDisposition"
    elif code in table:
        status, source = table[code][1], "hangupCauseCode"
    elif code:
        return UNMAPPED_STATUS, "unmapped_hangupCauseCode"
    else:
        raise CallbackRejected("systemDisposition", "missing systemDisposition and hangupCauseCode")
    if status == "PROVIDER_FAILURE" and code == "403":
        status = "PROVIDER_FAILURE_403"
    return status, source


def _php_strval(entry: object) -> str:
    if entry is None or entry is False:
        return ""
    if entry is True:
        return "1"
    if isinstance(entry, float):
        return str(int(entry)) if entry.is_integer() and abs(entry) < 1e15 else repr(entry)
    if isinstance(entry, (list, dict)):
        return "Array"
    return str(entry)


def phone_list(params: Mapping[str, str]) -> tuple[list[str], str]:
    """(the distinct phones of this customer in order, where they came from: ``phoneList``,
    ``params`` or ``params_after_bad_phoneList``)."""
    raw = params.get("phoneList", "")
    source = "params"
    if raw:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("phoneList"), list):
            return _distinct(_php_strval(e) for e in data["phoneList"]), "phoneList"
        source = "params_after_bad_phoneList"
    dialled = dialled_phone(params, with_dst=True)
    candidates = [params.get("phone1", ""), params.get("phone2", ""), params.get("cstmPhone", ""), dialled]
    return _distinct(candidates), source


def _distinct(candidates) -> list[str]:
    phones: list[str] = []
    for phone in candidates:
        if phone and phone != "0" and phone not in phones:
            phones.append(phone)
    return phones


def dialled_phone(params: Mapping[str, str], *, with_dst: bool = False) -> str:
    """``dialedPhone``, else ``dialledPhone`` (else ``dstPhone`` with ``with_dst``): the phone this
    attempt dialled, as the relay reads it."""
    names = ("dialedPhone", "dialledPhone", "dstPhone") if with_dst else ("dialedPhone", "dialledPhone")
    for name in names:
        if params.get(name):
            return params[name]
    return ""


def dial_index(params: Mapping[str, str]) -> tuple[int, bool]:
    """(``shareablePhonesDialIndex`` as PHP's ``(int)`` reads a numeric string, whether it was given
    as a usable number); non-numeric, negative or absent -> (0, False)."""
    raw = params.get("shareablePhonesDialIndex", "")
    if not raw or not raw.isascii() or _PHP_NUMERIC.match(raw) is None:
        return 0, False
    try:
        value = int(raw) if raw.lstrip("+-").isdigit() else int(float(raw))
    except (ValueError, OverflowError):
        return 0, False
    if value < 0:
        return 0, False
    return min(value, 9999), True
