"""The presence seed's AMI listings (Asterisk 22.10.1; see `service` for when each is asked)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..config import PresenceConfig
from . import availability, listings
from .devices import EndpointFilter

log = logging.getLogger(__name__)


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
            custom = availability.custom_from_list(items, self.config.custom_device_states, self.filter)
            return listings.device_states_from_list(items, self.filter), custom, "DeviceStateList"
        items = await self.list("PJSIPShowEndpoints")
        if items is None:
            return None, None, None
        return listings.device_states_from_endpoints(items, self.filter), None, "PJSIPShowEndpoints"

    async def queues(self) -> dict[str, dict[str, availability.Membership]] | None:
        items = await self.list("QueueStatus", unknown="empty")
        return None if items is None else availability.queue_members_from_list(items, self.filter)

    async def presence(self) -> dict[str, availability.PresenceValue] | None:
        items = await self.list("PresenceStateList")
        return None if items is None else availability.presence_from_list(items, self.filter)

    async def channels(self) -> dict[str, list[str]] | None:
        items = await self.list("CoreShowChannels")
        return None if items is None else listings.channels_from_list(items, self.filter)
