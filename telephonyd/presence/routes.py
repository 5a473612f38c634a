"""HTTP routes of presence: ``/api/ami/*`` and the ``/ws/agents`` WebSocket (all for ``auth='admin'``).

- ``GET /api/ami/status``: ``{"success": true, "node_id", "reg_server", "connected", "last_event_at",
  "contacts", "agents", "online", "states", "seeded", "last_seed"}``.
- ``GET /api/ami/extensions``: ``{"success": true, "node_id", "reg_server", "extensions": [agent +
  device_state, channels, contacts]}``.
- ``GET /api/ami/extensions/{ext}``: ``{"success": true, "node_id", "reg_server", "extension": {...}}``;
  404 ``{"success": false, "error": "unknown extension", "field": "ext"}``.

Each instance answers for the one Asterisk it follows: ``node_id`` names the instance and
``reg_server`` the value its ``ps_contacts`` rows carry (None when the contacts provider has none),
so a client behind a load balancer can tell whose extensions it got.
- ``POST /api/ami/refresh``: resyncs contacts and the presence seed; ``{"success": true,
  "contacts": {...}, "presence": {...}}``; 503 when AMI is not connected or a listing fails.
- ``GET /ws/agents``: see `telephonyd.presence.stream`.

Dashboard shape (`telephonyd.presence.dashboard`, the Mayday CRM contract) side by side: ``?shape=dashboard``
(or ``presence.api_shape: dashboard`` as the default, ``?shape=native`` then gives the above):
- ``GET /api/ami/extensions``: ``{"1010": {"isRegistered": true, "status": "Available", "lastSeen": "..."}}``;
- ``GET /api/ami/status``: ``{"connected", "lastDbSync", "cache": {"extensions", "registered", "seeded",
  "lastRefresh"}, "ts"}``;
- ``GET /ws/agents``: ``{"type": "agents:snapshot", "agents": [...], "ts"}`` then the dashboard's events
  as ``{"type": <event>, ...data}``. The same events on Socket.IO: `telephonyd.presence.socketio_hub`.
A ``shape`` other than these two is a 400.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import TelephonydError

if TYPE_CHECKING:
    from .service import PresenceService
    from .stream import AgentStream

log = logging.getLogger(__name__)

_dumps = functools.partial(json.dumps, default=str)


def _ok(body: dict[str, Any]) -> web.Response:
    return web.json_response({"success": True, **body}, dumps=_dumps)


def _error(status: int, error: str, field: str | None = None) -> web.Response:
    body: dict[str, object] = {"success": False, "error": error}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def origin(service: PresenceService) -> dict[str, Any]:
    """Which instance and which Asterisk an answer speaks for: ``node_id``, ``reg_server``."""
    return {"node_id": service.node_id, "reg_server": getattr(service.contacts, "reg_server", None)}


def routes(service: PresenceService, stream: AgentStream,
           dashboard_stream: AgentStream | None = None) -> list[web.RouteDef]:
    """Route definitions to mount with ``auth='admin'``."""

    def shape(request: web.Request) -> str | None:
        value = request.query.get("shape") or getattr(service.config, "api_shape", "native")
        return value if value in ("native", "dashboard") else None

    async def status(request: web.Request) -> web.Response:
        chosen = shape(request)
        if chosen is None:
            return _error(400, "shape must be native or dashboard", "shape")
        if chosen == "dashboard":
            return web.json_response(service.dashboard_status(), dumps=_dumps)
        return _ok({**service.status(), **origin(service)})

    async def extensions(request: web.Request) -> web.Response:
        chosen = shape(request)
        if chosen is None:
            return _error(400, "shape must be native or dashboard", "shape")
        if chosen == "dashboard":
            return web.json_response(service.dashboard_extensions(), dumps=_dumps)
        return _ok({**origin(service), "extensions": service.extensions()})

    async def websocket(request: web.Request) -> web.StreamResponse:
        chosen = shape(request)
        if chosen is None:
            return _error(400, "shape must be native or dashboard", "shape")
        if chosen == "dashboard" and dashboard_stream is not None:
            return await dashboard_stream.handle(request)
        return await stream.handle(request)

    async def extension(request: web.Request) -> web.Response:
        found = service.extension(request.match_info["ext"])
        if found is None:
            return _error(404, "unknown extension", "ext")
        return _ok({**origin(service), "extension": found})

    async def refresh(_request: web.Request) -> web.Response:
        try:
            result = await service.refresh()
        except (TelephonydError, TimeoutError, OSError) as exc:
            log.warning("refresh failed", extra={"error": str(exc) or type(exc).__name__})
            return _error(503, str(exc) or type(exc).__name__)
        return _ok(result)

    return [
        web.get("/api/ami/status", status),
        web.get("/api/ami/extensions", extensions),
        web.get("/api/ami/extensions/{ext}", extension),
        web.post("/api/ami/refresh", refresh),
        web.get("/ws/agents", websocket),
    ]
