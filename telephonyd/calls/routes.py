"""HTTP routes of calls (all for ``auth='admin'``) and the ``/ws/calls`` WebSocket stream.

- ``GET /api/calls?since_s=3600&limit=100``: ``{"success": true, "calls": [summary, ...]}``, the
  call records of calls that ended in the last ``since_s`` seconds, newest first.
- ``GET /api/calls/{key}``: one record by linkedid or uniqueid with ``record`` (schema-1 ``call``)
  and ``call_log`` (the DID Optimizer outcome of the same call, or null); 404 when unknown.
- ``GET /api/calls/live``: ``{"success": true, "calls": [schema-1 call, ...]}`` (live calls).
- ``GET /ws/calls``: first ``{"type": "calls:snapshot", "calls": [...]}``, then one
  ``{"type": "call:event", ...document}`` per call event (docs/call-events.md).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..presence.stream import AgentStream
from .documents import document
from .records import list_records, show_record
from .tracker import CallEvent

if TYPE_CHECKING:
    from ..store import Store

_dumps = functools.partial(json.dumps, default=str)


class CallStream(AgentStream):
    """The ``/ws/calls`` hub: the presence stream's client handling with call messages.

    ``calls``: returns the schema-1 object of every live call. Connect ``publish_event`` as a
    `CallService` listener.
    """

    def __init__(self, calls: Callable[[], Iterable[dict[str, Any]]], *, node_id: str, **kwargs: Any) -> None:
        super().__init__(calls, snapshot=lambda: {"type": "calls:snapshot", "calls": list(calls())}, **kwargs)
        self.node_id = node_id

    def publish_event(self, event: Any) -> None:
        """Queue one call event (``call:event``, the schema-1 document) for every client."""
        if isinstance(event, CallEvent):
            self.publish_message({"type": "call:event", **document(event, self.node_id)})


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"success": False, "error": f"{name} must be a number",
                                                  "field": name}), content_type="application/json") from None
    return min(max(value, low), high)


def routes(store: Store, stream: CallStream, live: Callable[[], Iterable[dict[str, Any]]],
           *, call_log_target: str) -> list[web.RouteDef]:
    async def list_calls(request: web.Request) -> web.Response:
        since_s = _number(request, "since_s", 3600, 1, 10 * 365 * 86400)
        limit = int(_number(request, "limit", 100, 1, 1000))
        calls = await list_records(store, since=time.time() - since_s, limit=limit)
        return web.json_response({"success": True, "calls": calls}, dumps=_dumps)

    async def live_calls(_request: web.Request) -> web.Response:
        return web.json_response({"success": True, "calls": list(live())}, dumps=_dumps)

    async def show_call(request: web.Request) -> web.Response:
        found = await show_record(store, request.match_info["key"], call_log_target=call_log_target)
        if found is None:
            return web.json_response({"success": False, "error": "unknown call", "field": "key"}, status=404)
        return web.json_response({"success": True, "call": found}, dumps=_dumps)

    return [
        web.get("/api/calls", list_calls),
        web.get("/api/calls/live", live_calls),
        web.get("/api/calls/{key}", show_call),
        web.get("/ws/calls", stream.handle),
    ]
