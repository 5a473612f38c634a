"""`CallService`: feeds the call tracker from AMI and hands its call events to listeners.

AMI: the tracker's events (`CallTracker.EVENTS`; ``VarSet`` only when ``calls.variables`` names
some) are applied inside the AMI read loop (pure and O(1) per event). After each AMI login the
service lists ``CoreShowChannels`` (``CoreShowChannel`` items carry ``Uniqueid`` and ``Linkedid``,
Asterisk 12+; recorded on 22.10.1) and closes the calls that ended while the session was down
(calls first seen after the listing's reply are left alone), and starts following the calls it
did not know. A timer closes calls older than ``calls.max_age_s``.

Listeners (`add_listener`) are synchronous callables receiving `CallEvent`; they must not block
(the MQTT publisher, the WebSocket stream and the `CallSink` only enqueue).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from ..errors import TelephonydError
from .describe import CallRules
from .settings import CallsConfig
from .tracker import CallEvent, CallTracker

log = logging.getLogger(__name__)

Listener = Callable[[CallEvent], None]


class AMIClientLike(Protocol):
    connected: bool

    def subscribe(self, pattern: str, callback: Callable[[Any], None]) -> Any: ...
    def on_connect(self, callback: Callable[[Any], Awaitable[None]]) -> Any: ...
    async def list_action(self, fields: dict[str, str]) -> tuple[Any, list[Any]]: ...


def rules_for(config: CallsConfig) -> CallRules:
    return CallRules.build(
        trunks=config.trunks, inbound_contexts=config.inbound_contexts,
        outbound_contexts=config.outbound_contexts, agent_technologies=config.agent_technologies,
        variables=config.variables,
    )


class CallService:
    """Component (`start`, `run`, `stop`, `health`). ``ami``: the AMI client. ``clock``: epoch s."""

    def __init__(self, config: CallsConfig, *, ami: AMIClientLike, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.ami = ami
        self._clock = clock
        self.tracker = CallTracker(rules_for(config), max_age_s=config.max_age_s, max_calls=config.max_calls)
        self._listeners: list[Listener] = []
        self._stopping = asyncio.Event()
        self._unsubscribe: list[Callable[[], None]] = []
        self.events_in = 0
        self.events_out = 0
        self.resyncs = 0
        self.last_resync_error: str | None = None

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def live_calls(self) -> Iterable[dict[str, Any]]:
        """The schema-1 ``call`` object of every live call (oldest first)."""
        return [self.tracker.snapshot(call) for call in list(self.tracker.calls.values())]

    # -- input -----------------------------------------------------------------------------------

    def on_event(self, message: Any) -> None:
        """AMI event callback (runs in the AMI read loop)."""
        self.events_in += 1
        self._emit(self.tracker.feed(message, self._clock(), getattr(message, "seq", 0)))

    def _emit(self, events: list[CallEvent]) -> None:
        for event in events:
            self.events_out += 1
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("call event listener failed", extra={"linkedid": event.linkedid})

    async def resync(self, client: Any = None) -> dict[str, Any]:
        """List ``CoreShowChannels`` and close the calls it no longer shows."""
        try:
            reply, items = await self.ami.list_action({"Action": "CoreShowChannels"})
        except (TelephonydError, TimeoutError, OSError) as exc:
            self.last_resync_error = str(exc) or type(exc).__name__
            log.warning("calls resync failed", extra={"error": self.last_resync_error})
            return {"ok": False, "error": self.last_resync_error}
        if not getattr(reply, "is_success", False):
            self.last_resync_error = str(reply.get("Message") or "CoreShowChannels refused")
            return {"ok": False, "error": self.last_resync_error}
        before = getattr(reply, "seq", 0) or None
        events = self.tracker.resync(items, self._clock(), before_seq=before)
        self._emit(events)
        self.resyncs += 1
        self.last_resync_error = None
        log.info("calls resynced", extra={"channels": len(items), "closed": len(events),
                                          "live_calls": len(self.tracker.calls)})
        return {"ok": True, "channels": len(items), "closed": len(events), "live_calls": len(self.tracker.calls)}

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        for name in CallTracker.EVENTS:
            if name == "VarSet" and not self.tracker.rules.watched_variables:
                continue
            self._unsubscribe.append(self.ami.subscribe(name, self.on_event))
        self._unsubscribe.append(self.ami.on_connect(self.resync))

    async def run(self) -> None:
        interval = max(1.0, min(60.0, self.config.max_age_s / 10))
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                self._emit(self.tracker.expire(self._clock()))

    async def stop(self, timeout: float) -> None:
        self._stopping.set()
        for unsubscribe in self._unsubscribe:
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe.clear()

    def health(self) -> dict[str, Any]:
        t = self.tracker
        return {"ok": True, "state": "stopped" if self._stopping.is_set() else "running",
                "live_calls": len(t.calls), "ended": t.ended_total, "closed": dict(t.closed),
                "events_in": self.events_in, "events_out": self.events_out, "resyncs": self.resyncs,
                "last_resync_error": self.last_resync_error}
