"""`LiveEvents`: the presence service's AMI event callbacks (synchronous, from the AMI reader).

Mixed into `PresenceService`, which owns ``machine``, ``filter``, ``config``, ``events_handled`` and
``_emit``. Field names: Asterisk 22.10.1 (see `service` and `availability`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import PresenceConfig
from . import availability
from .devices import EndpointFilter, normalize_device_state
from .state import PresenceEvent, PresenceMachine


class LiveEvents:
    machine: PresenceMachine
    filter: EndpointFilter
    config: PresenceConfig
    events_handled: int

    def _emit(self, events: Iterable[PresenceEvent]) -> None: ...


    def _on_device_state(self, message: Any) -> None:
        if message.get("ActionID"):
            return
        endpoint = self.filter.device_endpoint(message.get("Device"))
        state = normalize_device_state(message.get("State"))
        if endpoint is None or state is None:
            custom = availability.custom_device(message.get("Device"), state, self.config.custom_device_states,
                                                self.filter)
            if custom is not None:
                self.events_handled += 1
                self._emit(self.machine.custom_state(*custom))
            return
        self.events_handled += 1
        self._emit(self.machine.device_state(endpoint, state))

    def _on_queue_member(self, message: Any) -> None:
        if message.get("ActionID"):
            return
        found = availability.queue_member(message, self.filter)
        if found is None:
            return
        endpoint, queue, membership = found
        removed = str(message.get("Event") or "").lower() == "queuememberremoved"
        self.events_handled += 1
        self._emit(self.machine.queue_member(endpoint, queue, None if removed else membership))

    def _on_presence_state(self, message: Any) -> None:
        if message.get("ActionID"):
            return
        endpoint = availability.presentity_endpoint(message.get("Presentity"), self.filter)
        if endpoint is not None:
            self.events_handled += 1
            self._emit(self.machine.presence_state(endpoint, availability.presence_value(message)))

    def _on_newchannel(self, message: Any) -> None:
        channel = message.get("Channel")
        endpoint = self.filter.channel_endpoint(channel)
        if endpoint is not None:
            self.events_handled += 1
            self._emit(self.machine.channel_created(endpoint, channel))

    def _on_hangup(self, message: Any) -> None:
        channel = message.get("Channel")
        endpoint = self.filter.channel_endpoint(channel)
        if endpoint is not None:
            self.events_handled += 1
            self._emit(self.machine.channel_hungup(endpoint, channel))
