"""The presence seed's AMI listings (Asterisk 22.10.1; see `service` for when each is asked)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..config import PresenceConfig
from ..heap import take_slices
from . import availability, listings
from .devices import EndpointFilter

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Listing items read per event-loop turn (a 50,000-endpoint DeviceStateList).
PARSE_SLICE = 500


async def parse_sliced(items: list[Any], parse: Callable[[list[Any]], dict[str, T]]) -> dict[str, T]:
    """``parse(items)`` done `PARSE_SLICE` items per event-loop turn, the parts merged in order:
    a later item wins; per-endpoint dicts are merged and lists extended, as one pass would.
    ``items`` is emptied (see `take_slices`)."""
    out: dict[str, Any] = {}
    for index, part in enumerate(take_slices(items, PARSE_SLICE)):  # ``items`` emptied, each slice freed after use
        if index:
            await asyncio.sleep(0)
        for key, value in parse(part).items():
            before = out.get(key)
            if isinstance(before, dict) and isinstance(value, dict):
                before.update(value)
            elif isinstance(before, list) and isinstance(value, list):
                before.extend(value)
            else:
                out[key] = value
    return out


class SeedListings:
    """``ami``: ``list_action({...}) -> (response, items)``; ``config``: the ``presence`` section."""

    def __init__(self, ami: Any, config: PresenceConfig, endpoints: EndpointFilter) -> None:
        self.ami = ami
        self.config = config
        self.filter = endpoints

    async def list(self, action: str, *, unknown: str | None = None) -> list[Any] | None:
        """Items of a list action, or None when Asterisk answers ``Response: Error``.

        ``unknown``: with ``"empty"``, Asterisk's ``Invalid/unknown command`` answer (the module is
        not loaded) gives an empty listing instead of None. A lost connection or a timeout raises
        (AMI client errors, `TimeoutError`): the seed fails.
        """
        async with asyncio.timeout(self.config.seed_timeout_s):
            response, items = await self.ami.list_action({"Action": action})
        if str(response.get("Response", "Success")).lower() != "success":
            text = str(response.get("Message") or "")
            if unknown == "empty" and text.startswith("Invalid/unknown command"):
                return []
            log.info("AMI list action refused", extra={"action": action, "reply": text})
            return None
        return list(items)

    async def device_states(self) -> tuple[dict[str, str] | None, dict[str, dict[str, bool]] | None, str | None]:
        items = await self.list("DeviceStateList")
        if items is not None:
            mapping = self.config.custom_device_states
            custom = await parse_sliced(  # a copy: the second pass below consumes the list
                list(items), lambda part: availability.custom_from_list(part, mapping, self.filter))
            states = await parse_sliced(items, lambda part: listings.device_states_from_list(part, self.filter))
            return states, custom, "DeviceStateList"
        items = await self.list("PJSIPShowEndpoints")
        if items is None:
            return None, None, None
        states = await parse_sliced(items, lambda part: listings.device_states_from_endpoints(part, self.filter))
        return states, None, "PJSIPShowEndpoints"

    async def queues(self) -> dict[str, dict[str, availability.Membership]] | None:
        items = await self.list("QueueStatus", unknown="empty")
        if items is None:
            return None
        return await parse_sliced(items, lambda part: availability.queue_members_from_list(part, self.filter))

    async def presence(self) -> dict[str, availability.PresenceValue] | None:
        items = await self.list("PresenceStateList")
        if items is None:
            return None
        return await parse_sliced(items, lambda part: availability.presence_from_list(part, self.filter))

    async def channels(self) -> dict[str, list[str]] | None:
        items = await self.list("CoreShowChannels")
        if items is None:
            return None
        return await parse_sliced(items, lambda part: listings.channels_from_list(part, self.filter))
