"""Reading contacts from the contacts provider without depending on its classes (pure).

The provider (the ps_contacts sync) gives ``contacts_by_endpoint() -> {endpoint: [contact, ...]}``.
A contact may be a mapping or an object (dataclass, named tuple); the fields read here are the
contact id (``id``, the ps_contacts key ``<aor>;@<md5 of the URI>``), ``uri`` and ``status``
(the last ContactStatus: NonQualified, Reachable, Unreachable, Unknown, Removed...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

_ID_FIELDS = ("id", "contact_id", "object_name", "uri")
_STATUS_FIELDS = ("status", "contact_status")


def _field(contact: Any, names: Iterable[str]) -> Any:
    for name in names:
        value = contact.get(name) if isinstance(contact, Mapping) else getattr(contact, name, None)
        if value not in (None, ""):
            return value
    return None


def contact_id(contact: Any) -> str | None:
    value = _field(contact, _ID_FIELDS)
    return str(value) if value is not None else None


def contact_tech(contact: Any) -> str:
    """``PJSIP``, or ``SIP``/``IAX2`` for a registered peer (its id starts ``SIP/1010;@``)."""
    tech = _field(contact, ("tech",))
    if tech:
        return str(tech).upper()
    head = (contact_id(contact) or "").split(";@", 1)[0]
    return head.split("/", 1)[0].upper() if "/" in head else "PJSIP"


def contact_status(contact: Any) -> str:
    """The contact's status; a contact that carries none counts as ``Unknown`` (usable)."""
    value = _field(contact, _STATUS_FIELDS)
    return str(value) if value is not None else "Unknown"


def statuses(contacts: Iterable[Any]) -> dict[str, str]:
    """{contact id: status} for one endpoint's contacts."""
    out: dict[str, str] = {}
    for index, contact in enumerate(contacts):
        out[contact_id(contact) or f"#{index}"] = contact_status(contact)
    return out


def contact_document(contact: Any) -> dict[str, Any]:
    """A JSON-ready dict of a contact for the HTTP API (secrets never live in contacts)."""
    if isinstance(contact, Mapping):
        data = dict(contact)
    elif hasattr(contact, "as_dict"):
        data = dict(contact.as_dict())
    elif dataclasses.is_dataclass(contact) and not isinstance(contact, type):
        data = dataclasses.asdict(contact)
    elif hasattr(contact, "_asdict"):
        data = dict(contact._asdict())
    else:
        data = {k: v for k, v in vars(contact).items() if not k.startswith("_")}
    return {k: _plain(v) for k, v in data.items()}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    return str(value)
