"""What makes an online agent unavailable besides a call: queue pause, Do Not Disturb, away (pure).

Facts (Asterisk 22.10.1 lab recordings, tests/fixtures/asterisk-22.10.1/ami/lab_actions and
ami/events/queue_*, custom_devstate_and_presence*):
- Queue membership (app_queue, AMI class ``agent``): ``QueueMemberStatus``, ``QueueMemberPause``,
  ``QueueMemberAdded``, ``QueueMemberRemoved`` carry ``Queue``, ``Interface``, ``StateInterface``
  (``PJSIP/1011``), ``Paused`` (``0``/``1``) and ``PausedReason`` (empty when none). ``QueueStatus``
  lists ``QueueParams`` and ``QueueMember`` items (``Location`` instead of ``Interface``); without
  app_queue it answers ``Invalid/unknown command: QueueStatus...``, which means "no queues".
  A ``QueuePause`` without ``Queue`` pauses the member in every queue: one ``QueueMemberPause`` per queue.
- ``PresenceStateChange`` (class ``call``): ``Presentity`` (``CustomPresence:1010``), ``Status``
  (``not_set``, ``unavailable``, ``available``, ``away``, ``xa``, ``chat``, ``dnd``), ``Subtype``,
  ``Message``. ``PresenceStateList`` lists the same events (with an ActionID).
- A custom device state (``DEVICE_STATE(Custom:DND1010)=BUSY``, or ``devstate change``) is a
  ``DeviceStateChange`` with ``Device: Custom:DND1010``; ``DeviceStateList`` lists it too.

Mapping (``presence.custom_device_states`` maps a ``Custom:`` name prefix to a state, default
``{"DND": "dnd"}``: ``Custom:DND1010`` in any state but NOT_INUSE/UNKNOWN/UNAVAILABLE/INVALID means
dnd for 1010). Presence ``dnd`` -> dnd; ``away``, ``xa``, ``unavailable`` -> away; ``available``,
``chat``, ``not_set`` -> nothing. An agent paused in every queue it is a member of (at least one) is
paused, with the reason of the first paused queue (by name) that gives one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .devices import EndpointFilter

PRESENCE_TO_STATE = {"dnd": "dnd", "away": "away", "xa": "away", "unavailable": "away"}
_IDLE_CUSTOM = frozenset({"NOT_INUSE", "UNKNOWN", "UNAVAILABLE", "INVALID"})

Membership = tuple[bool, str]  # (paused, reason)
PresenceValue = tuple[str, str, str]  # (status, subtype, message)


def _text(message: Any, key: str) -> str:
    value = message.get(key)
    return str(value).strip() if value is not None else ""


def queue_member(message: Any, endpoints: EndpointFilter) -> tuple[str, str, Membership] | None:
    """``(endpoint, queue, (paused, reason))`` of a QueueMember* event or QueueMember list item."""
    queue = _text(message, "Queue")
    device = _text(message, "StateInterface") or _text(message, "Interface") or _text(message, "Location")
    endpoint = endpoints.device_endpoint(device)
    if not queue or endpoint is None:
        return None
    return endpoint, queue, (_text(message, "Paused") == "1", _text(message, "PausedReason"))


def queue_members_from_list(items: Iterable[Any], endpoints: EndpointFilter) -> dict[str, dict[str, Membership]]:
    """QueueStatus items -> {endpoint: {queue: (paused, reason)}} (QueueParams items are skipped)."""
    out: dict[str, dict[str, Membership]] = {}
    for item in items:
        if _text(item, "Event").lower() != "queuemember":
            continue
        found = queue_member(item, endpoints)
        if found is not None:
            endpoint, queue, membership = found
            out.setdefault(endpoint, {})[queue] = membership
    return out


def presentity_endpoint(presentity: str | None, endpoints: EndpointFilter) -> str | None:
    """``CustomPresence:1010`` -> ``1010`` when 1010 passes the endpoint pattern."""
    provider, sep, name = (presentity or "").strip().partition(":")
    if not sep or not provider or not name:
        return None
    if endpoints.pattern is not None and endpoints.pattern.fullmatch(name) is None:
        return None
    return name


def presence_value(message: Any) -> PresenceValue:
    return _text(message, "Status").lower(), _text(message, "Subtype"), _text(message, "Message")


def presence_from_list(items: Iterable[Any], endpoints: EndpointFilter) -> dict[str, PresenceValue]:
    """PresenceStateList items -> {endpoint: (status, subtype, message)}."""
    out: dict[str, PresenceValue] = {}
    for item in items:
        endpoint = presentity_endpoint(item.get("Presentity"), endpoints)
        if endpoint is not None:
            out[endpoint] = presence_value(item)
    return out


def custom_device(device: str | None, state: str | None, mapping: Mapping[str, str],
                  endpoints: EndpointFilter) -> tuple[str, str, bool] | None:
    """``Custom:DND1010`` + ``BUSY`` -> (``1010``, ``dnd``, True); None when no prefix maps it."""
    tech, sep, name = (device or "").strip().partition(":")
    if not sep or tech.lower() != "custom":
        return None
    for prefix, overlay in mapping.items():
        if name.upper().startswith(prefix.upper()) and len(name) > len(prefix):
            endpoint = name[len(prefix):]
            if endpoints.pattern is not None and endpoints.pattern.fullmatch(endpoint) is None:
                return None
            return endpoint, overlay, (state or "").upper() not in _IDLE_CUSTOM
    return None


def custom_from_list(items: Iterable[Any], mapping: Mapping[str, str],
                     endpoints: EndpointFilter) -> dict[str, dict[str, bool]]:
    """DeviceStateList items -> {endpoint: {overlay state: active}} for the mapped Custom: devices."""
    out: dict[str, dict[str, bool]] = {}
    for item in items:
        found = custom_device(item.get("Device"), item.get("State"), mapping, endpoints)
        if found is not None:
            endpoint, overlay, active = found
            out.setdefault(endpoint, {})[overlay] = active
    return out


def overlay(queues: Mapping[str, Membership], custom: Mapping[str, bool],
            presence: PresenceValue | None) -> tuple[str | None, str | None]:
    """The overlay state and its reason, by precedence dnd > paused > away; (None, None) if none."""
    from_presence = PRESENCE_TO_STATE.get(presence[0]) if presence else None
    reason = None
    if presence and from_presence:
        reason = " - ".join(p for p in presence[1:] if p) or None
    if custom.get("dnd") or from_presence == "dnd":
        return "dnd", reason if from_presence == "dnd" else None
    if queues and all(paused for paused, _ in queues.values()):
        reasons = [r for _, (_, r) in sorted(queues.items()) if r]
        return "paused", reasons[0] if reasons else None
    if custom.get("paused"):
        return "paused", None
    if custom.get("away") or from_presence == "away":
        return "away", reason if from_presence == "away" else None
    return None, None
