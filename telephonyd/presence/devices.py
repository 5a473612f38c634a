"""Names and values from AMI events, turned into endpoints and device states (pure, no I/O).

Facts (Asterisk 22.10.1 on the wire, main/devicestate.c for the texts):
- ``DeviceStateChange``'s ``Device`` is ``<tech>/<endpoint>`` (``PJSIP/1010``); ``State`` is one of
  UNKNOWN NOT_INUSE INUSE BUSY INVALID UNAVAILABLE RINGING RINGINUSE ONHOLD.
- A channel is ``<tech>/<endpoint>-<suffix>`` (``PJSIP/1010-00000003``; chan_sip ``SIP/1010-0000000a``;
  IAX2 ``IAX2/1010-1234``); a masqueraded channel may carry ``<ZOMBIE>`` or ``<MASQ>`` at the end.
- ``PJSIPShowEndpoints`` reports ``DeviceState`` as text (``Not in use``, ``In use``, ``Ring+Inuse``,
  ``On Hold``...). Some Asterisk releases lost a comma in that table and print ``On HoldONHOLD``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Channel technologies whose devices are agents' phones by default.
AGENT_TECHNOLOGIES = ("PJSIP", "SIP", "IAX2")

DEVICE_STATES = frozenset(
    {"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}
)

_DEVICE_STATE_TEXTS = {
    "unknown": "UNKNOWN",
    "not in use": "NOT_INUSE",
    "in use": "INUSE",
    "busy": "BUSY",
    "invalid": "INVALID",
    "unavailable": "UNAVAILABLE",
    "ringing": "RINGING",
    "ring+inuse": "RINGINUSE",
    "on hold": "ONHOLD",
    "on holdonhold": "ONHOLD",
}

_CHANNEL_DECORATION = re.compile(r"<[A-Z]+>$")


def normalize_device_state(value: str | None) -> str | None:
    """The canonical device state (``NOT_INUSE``) for an AMI value or its text form; None if unknown."""
    if value is None:
        return None
    text = value.strip()
    if text.upper() in DEVICE_STATES:
        return text.upper()
    return _DEVICE_STATE_TEXTS.get(text.lower())


@dataclass(frozen=True, slots=True)
class EndpointFilter:
    """Which devices count as agents: a technology list and an optional full-match name pattern."""

    technologies: tuple[str, ...] = AGENT_TECHNOLOGIES
    pattern: re.Pattern[str] | None = None

    @classmethod
    def build(cls, technologies: Iterable[str] = AGENT_TECHNOLOGIES, pattern: str | None = None) -> EndpointFilter:
        return cls(tuple(t.upper() for t in technologies), re.compile(pattern) if pattern else None)

    def accepts(self, tech: str, endpoint: str) -> bool:
        if tech.upper() not in self.technologies or not endpoint:
            return False
        return self.pattern is None or self.pattern.fullmatch(endpoint) is not None

    def device_endpoint(self, device: str | None) -> str | None:
        """``PJSIP/1010`` -> ``1010``; None for other technologies (``Local/...``, ``Queue:...``)."""
        tech, endpoint = split_device(device)
        return endpoint if tech is not None and self.accepts(tech, endpoint) else None

    def channel_endpoint(self, channel: str | None) -> str | None:
        """``PJSIP/1010-00000003`` -> ``1010``; None when the channel is not an agent's."""
        tech, endpoint = split_channel(channel)
        return endpoint if tech is not None and self.accepts(tech, endpoint) else None


def split_device(device: str | None) -> tuple[str | None, str]:
    """``PJSIP/1010`` -> (``PJSIP``, ``1010``); (None, "") when it has no ``tech/`` prefix."""
    if not device:
        return None, ""
    tech, sep, rest = device.strip().partition("/")
    if not sep or not tech or not rest:
        return None, ""
    return tech, rest


def split_channel(channel: str | None) -> tuple[str | None, str]:
    """``PJSIP/1010-00000003`` -> (``PJSIP``, ``1010``). The suffix after the last ``-`` is dropped."""
    tech, rest = split_device(channel)
    if tech is None:
        return None, ""
    rest = _CHANNEL_DECORATION.sub("", rest)
    endpoint, sep, suffix = rest.rpartition("-")
    if not sep or not endpoint or not suffix:
        return None, ""
    return tech, endpoint
