"""``telephonyd replay FILE``: play an AMI capture (`capture`) through presence and the call
tracker, offline (no Asterisk, no store, nothing sent), and print what the daemon would publish.

The events go, in order and with their recorded times, to the daemon's own `ContactsSync` (applied
in memory only), `PresenceService` (the ``presence`` section: endpoint pattern, overlays, wrap-up)
and `CallTracker` (the ``calls`` section's rules). Printed: each agent change as the MQTT message it
would publish (``<base_topic>/<node_id>/agents/<endpoint>`` and its JSON), each call event as the
``/ws/calls`` and webhook event, then every agent's final state. The listings made at login are not
in a capture: an agent registered before it began shows offline until its next event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ..ami.dispatch import Subscriptions
from ..ami.message import AMIMessage


class OfflineAMI:
    """The AMI client's subscribe side, fed from a capture; never connected, no actions."""

    connected = False

    def __init__(self) -> None:
        self.dispatcher = Subscriptions()
        self.last_event_at: float | None = None

    def subscribe(self, pattern: str, callback: Callable[[Any], None]) -> Callable[[], None]:
        return self.dispatcher.add(pattern, callback)

    def on_connect(self, _callback: Any) -> Callable[[], None]:
        return lambda: None

    async def list_action(self, _fields: dict[str, str]) -> tuple[Any, list[Any]]:
        raise ConnectionError("offline replay: no AMI actions")

    async def action(self, *_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("offline replay: no AMI actions")


def offline_contacts(config: Any, ami: OfflineAMI) -> Any:
    """The daemon's `ContactsSync` fed by ``ami`` and applied in memory only: it is never started,
    so nothing is read from or written to ``ps_contacts`` (its pending writes are dropped)."""
    from ..contacts.sync import ContactsSync

    sync = ContactsSync(None, ami, config.ps_contacts, node_id=config.node_id)  # type: ignore[arg-type]
    sync.listen()  # the event intake of start(), without the store
    return sync


async def replay(config: Any, events: list[tuple[float, list[tuple[str, str]]]], say: Callable[[str], None],
                 started_at: float) -> dict[str, Any]:
    """Play ``events`` (from `capture.read_capture`); returns ``{"agents": {endpoint: status},
    "published": n, "call_events": n}``."""
    from ..calls.documents import document
    from ..calls.tracker import CallTracker
    from ..presence import PresenceService
    from ..presence.state import AgentRetired, AgentStatus

    clock_now = [started_at]
    ami = OfflineAMI()
    contacts = offline_contacts(config, ami)
    presence = PresenceService(config.presence, ami=ami, contacts=contacts, node_id=config.node_id,
                               clock=lambda: clock_now[0])
    base = f"{config.mqtt.base_topic}/{config.node_id}/agents"
    counts = {"published": 0, "call_events": 0}

    def on_presence(event: Any) -> None:
        if isinstance(event, AgentStatus):
            counts["published"] += 1
            say(f"t+{clock_now[0] - started_at:8.3f}  mqtt {base}/{event.endpoint}  "
                f"{json.dumps(event.as_dict(), default=str, sort_keys=True)}")
        elif isinstance(event, AgentRetired):
            counts["published"] += 1
            say(f"t+{clock_now[0] - started_at:8.3f}  mqtt {base}/{event.endpoint}  (retired: empty retained)")

    presence.add_listener(on_presence)
    await presence.start()
    tracker = _tracker(config, CallTracker)
    try:
        for seq, (t, pairs) in enumerate(events, start=1):
            clock_now[0] = started_at + t
            message = AMIMessage(pairs, seq=seq, received_at=t)
            if message.get("Event") is None:
                continue
            ami.dispatcher.dispatch(message)
            contacts.apply_queued()  # what the worker does after coalesce_s, at once
            for event in tracker.feed(message, clock_now[0], seq) if tracker is not None else []:
                counts["call_events"] += 1
                doc = document(event, config.node_id)
                call = doc.get("call") or {}
                say(f"t+{t:8.3f}  call  {doc.get('event')}  linkedid {call.get('linkedid')}  "
                    f"state {call.get('state')}  dial_status {call.get('dial_status')}")
            await asyncio.sleep(0)
    finally:
        await presence.stop(1.0)
    agents = {a.endpoint: a.as_dict() for a in presence.machine.agents()}
    return {"agents": agents, **counts}


def _tracker(config: Any, tracker_class: Any) -> Any:
    from ..calls.service import rules_for

    return tracker_class(rules_for(config.calls), max_age_s=config.calls.max_age_s, max_calls=config.calls.max_calls)
