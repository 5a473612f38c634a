"""`AMIConnection`: one TCP session's socket, its actions in flight and the request/reply exchange."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from .actions import check_sendable
from .dispatch import PendingActions
from .errors import AMIActionTimeout, AMIConnectionLost
from .framing import encode_action
from .message import AMIMessage


class AMIConnection:
    """The streams of one session; ``next_action_id`` gives each action its ActionID.

    ``rest`` holds bytes read after the banner and not parsed yet; ``logged_in_at`` is the
    monotonic time of the successful login (None before it and after the session ends).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        next_action_id: Callable[[], str],
        *,
        default_timeout_s: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.next_action_id = next_action_id
        self.default_timeout_s = default_timeout_s
        self.pending = PendingActions()
        self.rest = b""
        self.logged_in_at: float | None = None

    async def request(
        self, fields: Mapping[str, Any], *, is_list: bool, timeout: float | None
    ) -> tuple[AMIMessage, list[AMIMessage]]:
        """Send one action; wait for its reply (and list items up to ``...Complete``).

        ``timeout`` (default ``default_timeout_s``) bounds the reply, then each gap between list
        items. Raises `AMIActionTimeout`, `AMIConnectionLost`, `ValueError` (line break in a field, or
        an action not in `actions.SENT_ACTIONS`).
        """
        name = check_sendable(fields)
        timeout = self.default_timeout_s if timeout is None else timeout
        action_id = self.next_action_id()
        payload = {k: v for k, v in fields.items() if k.lower() != "actionid"}
        payload["ActionID"] = action_id
        data = encode_action(payload)
        pending = self.pending.add(action_id, is_list=is_list)
        try:
            try:
                async with asyncio.timeout(timeout):
                    self.writer.write(data)
                    await self.writer.drain()
                    reply = await pending.reply
            except TimeoutError:
                raise AMIActionTimeout(f"no reply to {name} within {timeout:g} s") from None
            except (ConnectionError, OSError) as exc:
                raise AMIConnectionLost(f"AMI connection lost: {exc}") from None
            if pending.done is None:
                return reply, []
            while True:
                seen = pending.progress
                try:
                    async with asyncio.timeout(timeout):
                        items = await asyncio.shield(pending.done)
                    return reply, items
                except TimeoutError:
                    if pending.progress == seen:
                        raise AMIActionTimeout(f"{name} list stalled after {seen} items") from None
        finally:
            self.pending.discard(action_id)

    def abort(self) -> None:
        self.writer.transport.abort()
