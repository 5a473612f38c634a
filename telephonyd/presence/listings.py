"""Reading the AMI listings a presence seed uses (pure).

- ``DeviceStateList`` (Asterisk 13+): ``DeviceStateChange`` items with ``Device`` and ``State``
  (recording 03_PJSIPShowContacts_registered, action ``act-5``).
- ``PJSIPShowEndpoints``: ``EndpointList`` items with ``ObjectName`` and ``DeviceState`` as text
  (``Not in use``); only PJSIP endpoints, the fallback when DeviceStateList is refused.
- ``CoreShowChannels``: ``CoreShowChannel`` items with ``Channel``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .devices import EndpointFilter, normalize_device_state


def device_states_from_list(items: Iterable[Any], endpoints: EndpointFilter) -> dict[str, str]:
    """{endpoint: device state} from DeviceStateList items, agent devices only."""
    states: dict[str, str] = {}
    for item in items:
        endpoint = endpoints.device_endpoint(item.get("Device"))
        state = normalize_device_state(item.get("State"))
        if endpoint is not None and state is not None:
            states[endpoint] = state
    return states


def device_states_from_endpoints(items: Iterable[Any], endpoints: EndpointFilter) -> dict[str, str]:
    """{endpoint: device state} from PJSIPShowEndpoints items (``DeviceState: Not in use``)."""
    states: dict[str, str] = {}
    for item in items:
        name = item.get("ObjectName")
        state = normalize_device_state(item.get("DeviceState"))
        if name and state is not None and endpoints.accepts("PJSIP", name):
            states[name] = state
    return states


def channels_from_list(items: Iterable[Any], endpoints: EndpointFilter) -> dict[str, list[str]]:
    """{endpoint: [channel, ...]} from CoreShowChannels items, agent channels only."""
    channels: dict[str, list[str]] = {}
    for item in items:
        channel = item.get("Channel")
        endpoint = endpoints.channel_endpoint(channel)
        if endpoint is not None:
            channels.setdefault(endpoint, []).append(channel)
    return channels
