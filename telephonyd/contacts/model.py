"""Contacts as the daemon holds them (pure: no I/O).

Facts (Asterisk 22.10.1 recordings, res_pjsip/location.c, chan_sip.c):
- A PJSIP contact id is ``<AOR>;@<md5 hex of the contact URI>`` (13.6+), so it is computed from a
  ContactStatus event's ``AOR`` and ``URI``; the listing (``PJSIPShowContacts``) gives it as
  ``ObjectName``.
- ContactStatus values on the wire: ``NonQualified`` (13-15 send ``Created`` for it), ``Reachable``,
  ``Unreachable``, ``Unknown``, ``Removed``; ``Updated`` only in 13.10 release candidates. They are
  compared exactly, never by substring (``"Unreachable"`` contains ``"reachable"``).

chan_sip and IAX2 peers have no ContactStatus and no contact object. A dynamic peer that registered
is kept as one contact row per peer: id ``<tech>/<peer>;@<md5 hex of "<tech>/<peer>">``
(``SIP/1010;@...``), uri ``sip:<peer>@<address>`` (``iax2:`` for IAX2), endpoint ``<peer>``, no
expiration (chan_sip does not tell it). The ``/`` in the part before ``;@`` tells such rows from
PJSIP ones, whose AOR names never come from a channel name. PJSIP's own PeerStatus is about the
endpoint as a whole and creates no row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
from dataclasses import dataclass
from typing import Any, Literal

#: Our status vocabulary (the ContactStatus values Asterisk 16+ sends for live contacts).
NON_QUALIFIED = "NonQualified"
REACHABLE = "Reachable"
UNREACHABLE = "Unreachable"
UNKNOWN = "Unknown"
REMOVED = "Removed"
UPDATED = "Updated"

_STATUS_ON_WIRE = {
    "NonQualified": NON_QUALIFIED,
    "Created": NON_QUALIFIED,  # Asterisk 13-15 for the same state
    "Reachable": REACHABLE,
    "Unreachable": UNREACHABLE,
    "Unknown": UNKNOWN,
    "Removed": REMOVED,
    "Updated": UPDATED,  # 13.10 release candidates: "same status as before"
}

_TRUE = frozenset({"yes", "true", "1", "on", "y", "t"})
_FALSE = frozenset({"no", "false", "0", "off", "n", "f"})


def contact_id(aor: str, uri: str) -> str:
    """``<aor>;@<md5 hex of uri>``: the id res_pjsip gives a contact it stores."""
    return f"{aor};@{hashlib.md5(uri.encode('utf-8')).hexdigest()}"


def peer_contact_id(tech: str, peer: str) -> str:
    """The id of the row standing for a registered chan_sip/IAX2 peer (``SIP/1010;@<md5>``)."""
    name = f"{tech}/{peer}"
    return f"{name};@{hashlib.md5(name.encode('utf-8')).hexdigest()}"


def normalize_status(value: str | None) -> str | None:
    """The status for an exact wire value (``Created`` -> ``NonQualified``); None if unknown."""
    if value is None:
        return None
    return _STATUS_ON_WIRE.get(value.strip())


def normalize_bool(value: str | None) -> str | None:
    """``yes``/``no`` for Asterisk's boolean spellings (valid in every version of its enum)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return "yes"
    if text in _FALSE:
        return "no"
    return None


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            return None  # "N/A" and other placeholders


def to_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def blank_none(value: str | None) -> str | None:
    return value if value else None


@dataclass(frozen=True, slots=True)
class Contact:
    """One contact. Field names are the ``ps_contacts`` column names (``aor`` is derived)."""

    id: str
    endpoint: str | None = None
    uri: str | None = None
    status: str | None = None
    roundtrip_usec: int | None = None
    status_updated_at: float | None = None
    expiration_time: int | None = None
    qualify_frequency: int | None = None
    qualify_timeout: float | None = None
    user_agent: str | None = None
    via_addr: str | None = None
    via_port: int | None = None
    call_id: str | None = None
    path: str | None = None
    outbound_proxy: str | None = None
    authenticate_qualify: str | None = None
    prune_on_boot: str | None = None
    qualify_2xx_only: str | None = None
    reg_server: str | None = None

    @property
    def aor(self) -> str:
        """The AOR (PJSIP) or ``<tech>/<peer>`` (chan_sip/IAX2): the id before ``;@``."""
        return self.id.split(";@", 1)[0]

    @property
    def tech(self) -> str:
        """``PJSIP`` for res_pjsip contacts, ``SIP`` or ``IAX2`` for registered peers."""
        head = self.aor
        return head.split("/", 1)[0] if "/" in head else "PJSIP"

    def row(self) -> dict[str, Any]:
        """Column values for ``ps_contacts``."""
        return dict(zip(FIELDS, _all_fields(self)))

    @classmethod
    def from_row(cls, row: Any) -> Contact:
        mapping = row._mapping if hasattr(row, "_mapping") else row
        return cls(*(mapping.get(name) for name in FIELDS))

    def replace(self, **changes: Any) -> Contact:
        """A copy with some fields changed (``dataclasses.replace`` is several times slower)."""
        values = list(_all_fields(self))
        for name, value in changes.items():
            values[_INDEX[name]] = value
        return Contact(*values)

    def same_details(self, other: Contact) -> bool:
        """Equal registration data (everything but status, round trip and their time)."""
        return _details(self) == _details(other)

    def same_row(self, other: Contact) -> bool:
        """Equal as far as a write is concerned (status_updated_at and round trip aside)."""
        return self.status == other.status and _details(self) == _details(other)

    def to_json(self) -> dict[str, Any]:
        data = self.row()
        data["aor"] = self.aor
        data["tech"] = self.tech
        return data


DETAIL_FIELDS = (
    "endpoint", "uri", "expiration_time", "qualify_frequency", "qualify_timeout", "user_agent", "via_addr",
    "via_port", "call_id", "path", "outbound_proxy", "authenticate_qualify", "prune_on_boot", "qualify_2xx_only",
    "reg_server",
)
FIELDS = tuple(f.name for f in dataclasses.fields(Contact))
_details = operator.attrgetter(*DETAIL_FIELDS)
_all_fields = operator.attrgetter(*FIELDS)
_INDEX = {name: i for i, name in enumerate(FIELDS)}


@dataclass(frozen=True, slots=True)
class ContactChange:
    """What happened to one contact: ``added``, ``updated`` (status or details) or ``removed``.

    ``contact`` is the new state (the last known one for ``removed``), ``previous`` the one before.
    """

    kind: Literal["added", "updated", "removed"]
    contact: Contact
    previous: Contact | None = None

    @property
    def endpoint(self) -> str | None:
        return self.contact.endpoint
