"""AMI messages -> contacts and contact events (pure).

Field names per Asterisk version (recordings of 22.10.1 and of 20.20.1 with chan_sip enabled,
res_pjsip/pjsip_manager.xml, chan_sip.c):
- ``ContactStatus`` event: ``URI``, ``ContactStatus``, ``AOR``, ``EndpointName``, ``RoundtripUsec``.
- ``ContactList`` (PJSIPShowContacts, 16+): ``ObjectName`` (the id), ``Uri``, ``Endpoint``,
  ``ExpirationTime``, ``QualifyFrequency``, ``QualifyTimeout``, ``UserAgent``, ``ViaAddr``, ``ViaPort``,
  ``CallId``, ``RegServer``, ``PruneOnBoot``, ``Path``, ``OutboundProxy``, ``AuthenticateQualify``,
  ``Qualify2xxOnly``, ``Status``, ``RoundtripUsec`` (``N/A`` when not reachable); no AOR field.
- ``ContactStatusDetail`` (PJSIPShowEndpoint; PJSIPShowRegistrationInboundContactStatuses on 13-15):
  ``AOR``, ``URI``, ``UserAgent``, ``RegExpire``, ``ViaAddress`` (``addr:port``), ``CallID``, ``Status``,
  ``RoundtripUsec``, ``EndpointName``, ``ID`` (absent on early 13), ``QualifyFrequency``...
- chan_sip/IAX2 ``PeerStatus``: ``Peer: SIP/1010``, ``PeerStatus`` Registered (with ``Address``,
  IAX2 adds ``Port``), Unregistered, Reachable/Lagged (with ``Time`` in ms), Unreachable, Rejected.
  On 20.20.1 chan_sip sends ``Address: 127.0.0.1:5230`` on Registered, no ``Time`` on the first
  Reachable, ``Time: -1`` on Unreachable and ``Cause: Expired`` on Unregistered (also for Expires: 0);
  a re-REGISTER sends no PeerStatus.
- ``PeerEntry`` (SIPpeers, IAXpeerlist): ``ObjectName``, ``Channeltype``, ``IPaddress`` (``-none-``
  when not registered), ``IPport``, ``Dynamic``, ``Status`` (``OK (5 ms)``, ``LAGGED (900 ms)``,
  ``UNREACHABLE``, ``UNKNOWN``, ``Unmonitored``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .model import (
    NON_QUALIFIED,
    REACHABLE,
    UNKNOWN,
    UNREACHABLE,
    Contact,
    blank_none,
    contact_id,
    normalize_bool,
    normalize_status,
    peer_contact_id,
    to_float,
    to_int,
)


class MessageLike(Protocol):
    seq: int
    received_at: float

    def get(self, key: str, default: str | None = None) -> str | None: ...


#: The short labels of ``pjsip show contacts`` (never sent over AMI by 22.x, accepted in listings).
_SHORT_LABELS = {"Avail": REACHABLE, "Unavail": UNREACHABLE, "NonQual": NON_QUALIFIED}

PEER_TECHS = ("SIP", "IAX2")


@dataclass(frozen=True, slots=True)
class ContactStatusEvent:
    """A ContactStatus event: ``status`` is normalized and may be ``Removed`` or ``Updated``."""

    id: str
    aor: str
    endpoint: str | None
    uri: str
    status: str
    roundtrip_usec: int | None
    seq: int = 0
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class PeerStatusEvent:
    """A chan_sip/IAX2 PeerStatus that concerns a registration or its reachability."""

    id: str
    tech: str
    peer: str
    kind: Literal["registered", "unregistered", "status"]
    status: str | None = None
    address: str | None = None
    roundtrip_usec: int | None = None
    seq: int = 0
    received_at: float = 0.0


def parse_contact_status(msg: MessageLike) -> ContactStatusEvent | None:
    """The event, or None when a field is missing or the status is not one Asterisk sends."""
    aor, uri = msg.get("AOR"), msg.get("URI")
    status = normalize_status(msg.get("ContactStatus"))
    if not aor or not uri or status is None:
        return None
    return ContactStatusEvent(contact_id(aor, uri), aor, blank_none(msg.get("EndpointName")), uri, status,
                              to_int(msg.get("RoundtripUsec")), msg.seq, msg.received_at)


def parse_peer_status(msg: MessageLike) -> PeerStatusEvent | None:
    """chan_sip/IAX2 registrations and qualify results; None for PJSIP (endpoint-level) and others."""
    peer = msg.get("Peer") or ""
    tech, sep, name = peer.partition("/")
    tech = tech.upper()
    if not sep or not name or tech not in PEER_TECHS:
        return None
    value = (msg.get("PeerStatus") or "").strip()
    cid = peer_contact_id(tech, name)
    common = {"seq": msg.seq, "received_at": msg.received_at}
    if value == "Registered":
        return PeerStatusEvent(cid, tech, name, "registered", address=_peer_address(msg), **common)
    if value == "Unregistered":
        return PeerStatusEvent(cid, tech, name, "unregistered", **common)
    if value in ("Reachable", "Lagged"):
        ms = to_int(msg.get("Time"))
        return PeerStatusEvent(cid, tech, name, "status", REACHABLE,
                               roundtrip_usec=ms * 1000 if ms is not None else None, **common)
    if value == "Unreachable":
        return PeerStatusEvent(cid, tech, name, "status", UNREACHABLE, **common)
    return None  # Rejected (authentication failure) changes no registration


def _peer_address(msg: MessageLike) -> str | None:
    address = blank_none(msg.get("Address"))
    port = blank_none(msg.get("Port"))
    if address and port and not _split_host_port(address)[1]:
        address = f"{address}:{port}"
    return address


def peer_contact(tech: str, peer: str, address: str | None, *, status: str | None, roundtrip_usec: int | None,
                 reg_server: str | None, now: float | None = None) -> Contact:
    host, port = _split_host_port(address or "")
    scheme = "iax2" if tech == "IAX2" else "sip"
    return Contact(peer_contact_id(tech, peer), endpoint=peer, uri=f"{scheme}:{peer}@{address}" if address else None,
                   status=status, roundtrip_usec=roundtrip_usec, status_updated_at=now, via_addr=host or None,
                   via_port=port, reg_server=reg_server)


def contact_from_list_item(msg: MessageLike, *, reg_server: str | None) -> Contact | None:
    """A ``ContactList`` item; ``reg_server`` replaces the listed one when not None."""
    cid = msg.get("ObjectName")
    if not cid or ";@" not in cid:
        return None
    return Contact(
        cid,
        endpoint=blank_none(msg.get("Endpoint")),
        uri=blank_none(msg.get("Uri")),
        status=_listed_status(msg.get("Status")),
        roundtrip_usec=to_int(msg.get("RoundtripUsec")),
        expiration_time=to_int(msg.get("ExpirationTime")),
        qualify_frequency=to_int(msg.get("QualifyFrequency")),
        qualify_timeout=to_float(msg.get("QualifyTimeout")),
        user_agent=blank_none(msg.get("UserAgent")),
        via_addr=blank_none(msg.get("ViaAddr")),
        via_port=to_int(msg.get("ViaPort")),
        call_id=blank_none(msg.get("CallId")),
        path=blank_none(msg.get("Path")),
        outbound_proxy=blank_none(msg.get("OutboundProxy")),
        authenticate_qualify=normalize_bool(msg.get("AuthenticateQualify")),
        prune_on_boot=normalize_bool(msg.get("PruneOnBoot")),
        qualify_2xx_only=normalize_bool(msg.get("Qualify2xxOnly")),
        reg_server=reg_server if reg_server is not None else blank_none(msg.get("RegServer")),
    )


def contact_from_status_detail(msg: MessageLike, *, reg_server: str | None) -> Contact | None:
    """A ``ContactStatusDetail`` item (no RegServer/PruneOnBoot in it)."""
    aor, uri = msg.get("AOR"), msg.get("URI")
    if not aor or not uri:
        return None
    host, port = _split_host_port(msg.get("ViaAddress") or "")
    return Contact(
        blank_none(msg.get("ID")) or contact_id(aor, uri),
        endpoint=blank_none(msg.get("EndpointName")),
        uri=uri,
        status=_listed_status(msg.get("Status")),
        roundtrip_usec=to_int(msg.get("RoundtripUsec")),
        expiration_time=to_int(msg.get("RegExpire")),
        qualify_frequency=to_int(msg.get("QualifyFrequency")),
        qualify_timeout=to_float(msg.get("QualifyTimeout")),
        user_agent=blank_none(msg.get("UserAgent")),
        via_addr=host or None,
        via_port=port,
        call_id=blank_none(msg.get("CallID")),
        path=blank_none(msg.get("Path")),
        outbound_proxy=blank_none(msg.get("OutboundProxy")),
        authenticate_qualify=normalize_bool(msg.get("AuthenticateQualify")),
        qualify_2xx_only=normalize_bool(msg.get("Qualify2xxOnly")),
        reg_server=reg_server,
    )


def contact_from_peer_entry(msg: MessageLike, *, tech: str, reg_server: str | None) -> Contact | None:
    """A registered dynamic peer from SIPpeers (``tech`` SIP) or IAXpeerlist (IAX2).

    None for static or unregistered peers. ``tech`` comes from the action, since chan_iax2 spells
    its ``Channeltype`` ``IAX``.
    """
    name = msg.get("ObjectName")
    address = (msg.get("IPaddress") or "").strip()
    if not name or tech not in PEER_TECHS or normalize_bool(msg.get("Dynamic")) != "yes":
        return None
    if not address or address in ("-none-", "(null)", "(Unspecified)", "0.0.0.0"):
        return None
    port = (msg.get("IPport") or "").strip()
    status, rtt = _peer_entry_status(msg.get("Status") or "")
    return peer_contact(tech, name, f"{address}:{port}" if port and port != "0" else address, status=status,
                        roundtrip_usec=rtt, reg_server=reg_server)


def _peer_entry_status(text: str) -> tuple[str, int | None]:
    head = text.strip().split(" ", 1)[0].upper()
    ms = None
    if "(" in text and "ms" in text:
        ms = to_int(text.split("(", 1)[1].split("ms", 1)[0])
    if head in ("OK", "LAGGED"):
        return REACHABLE, ms * 1000 if ms is not None else None
    if head == "UNREACHABLE":
        return UNREACHABLE, None
    if head == "UNMONITORED":
        return NON_QUALIFIED, None
    return UNKNOWN, None


def _listed_status(value: str | None) -> str | None:
    status = normalize_status(value)
    if status is None and value is not None:
        status = _SHORT_LABELS.get(value.strip())
    return status


def _split_host_port(text: str) -> tuple[str, int | None]:
    """``1.2.3.4:5060`` / ``[::1]:5060`` / ``host`` -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, to_int(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, to_int(port)
    return text, None
