"""Routing of received messages: replies to the action waiting for them, events to subscribers.

Pure bookkeeping (futures, no sockets). Event subscriptions are matched by event name,
case-insensitively, with ``*`` and ``?`` wildcards; the match per event name is cached so routing
an event costs one dict lookup however many subscriptions exist.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..heap import keep_long_lived
from .actions import ends_list, starts_list
from .message import AMIMessage

log = logging.getLogger(__name__)

EventCallback = Callable[[AMIMessage], None]

#: A list reply's items are moved out of the collector's full passes every this many items (see
#: `telephonyd.heap`): a 50,000-item PJSIPShowContacts otherwise waits whole in the young heap.
LIST_FREEZE_EVERY = 2000


class _ByName(dict[str, tuple[EventCallback, ...]]):
    """Event name (as sent) -> its callbacks, filled on the first lookup of each name: a hit is a
    plain dict lookup, with no Python call."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        super().__init__()
        self._subscriptions = subscriptions

    def __missing__(self, event: str) -> tuple[EventCallback, ...]:
        found = self[event] = self._subscriptions.callbacks_for(event)
        return found


class Subscriptions:
    """Event-name patterns and their synchronous callbacks."""

    def __init__(self) -> None:
        self._entries: list[tuple[re.Pattern[str], EventCallback]] = []
        self._cache: dict[str, tuple[EventCallback, ...]] = {}
        self._by_name = _ByName(self)

    @property
    def by_name(self) -> Mapping[str, tuple[EventCallback, ...]]:
        """``by_name[event]``: the callbacks for an event name as sent (an empty tuple for none),
        for a read loop that calls them itself; emptied on every subscribe and unsubscribe."""
        return self._by_name

    def add(self, pattern: str, callback: EventCallback) -> Callable[[], None]:
        """Subscribe ``callback`` to events whose name matches ``pattern``; returns an unsubscriber."""
        if not pattern:
            raise ValueError("empty event pattern")
        entry = (re.compile(fnmatch.translate(pattern.lower())), callback)
        self._entries.append(entry)
        self._cache.clear()
        self._by_name.clear()

        def remove() -> None:
            if entry in self._entries:
                self._entries.remove(entry)
                self._cache.clear()
                self._by_name.clear()

        return remove

    def callbacks_for(self, event: str) -> tuple[EventCallback, ...]:
        lowered = event.lower()
        found = self._cache.get(lowered)
        if found is None:
            found = tuple(cb for regex, cb in self._entries if regex.match(lowered))
            self._cache[lowered] = found
        return found

    def dispatch(self, message: AMIMessage) -> None:
        """Call every matching callback; a failing callback is logged and does not stop the others."""
        event = message.event
        if event is not None:
            self.dispatch_event(event, message)

    def dispatch_event(self, event: str, message: AMIMessage) -> None:
        """`dispatch` for a message whose event name (``message.event``) the caller already read."""
        for callback in self._by_name[event]:  # the name as sent: no lower() for the usual spelling
            try:
                callback(message)
            except Exception:
                log.exception("AMI event callback failed", extra={"event": event})


@dataclass(eq=False)
class PendingAction:
    """An action waiting for its reply (and, for a list action, its items up to ``...Complete``)."""

    action_id: str
    is_list: bool
    reply: asyncio.Future[AMIMessage]
    done: asyncio.Future[list[AMIMessage]] | None = None
    items: list[AMIMessage] = field(default_factory=list)
    progress: int = 0


class PendingActions:
    """Actions in flight on one connection, by ActionID."""

    def __init__(self) -> None:
        self._by_id: dict[str, PendingAction] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, action_id: str, *, is_list: bool) -> PendingAction:
        loop = asyncio.get_running_loop()
        pending = PendingAction(
            action_id,
            is_list,
            loop.create_future(),
            loop.create_future() if is_list else None,
        )
        self._by_id[action_id] = pending
        return pending

    def discard(self, action_id: str) -> None:
        self._by_id.pop(action_id, None)

    def route(self, message: AMIMessage) -> bool:
        """Hand ``message`` to the action it answers; False when no action is waiting for it."""
        action_id = message.action_id
        if action_id is None:
            return False
        pending = self._by_id.get(action_id)
        if pending is None:
            return False
        if message.event is None:
            if pending.reply.done():
                return False
            pending.reply.set_result(message)
            if not pending.is_list or not message.is_success or not starts_list(message):
                # A plain action, or a list action answered by an error or without a list: done.
                self._finish(pending)
            return True
        if not pending.is_list or not pending.reply.done():
            # Events carrying the ActionID of a plain action (OriginateResponse) go to subscribers.
            return False
        if ends_list(message):
            self._finish(pending)
        else:
            pending.items.append(message)
            pending.progress += 1
            if not pending.progress % LIST_FREEZE_EVERY:
                keep_long_lived()
        return True

    def _finish(self, pending: PendingAction) -> None:
        self._by_id.pop(pending.action_id, None)
        if pending.done is not None and not pending.done.done():
            pending.done.set_result(pending.items)

    def fail_all(self, exc: BaseException) -> None:
        """Fail every waiting action (the connection is gone)."""
        for pending in list(self._by_id.values()):
            for future in (pending.reply, pending.done):
                if future is not None and not future.done():
                    future.set_exception(exc)
                    future.exception()  # mark retrieved: nobody may be waiting any more
        self._by_id.clear()
