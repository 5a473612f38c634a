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


def routes(service: PresenceService, stream: AgentStream) -> list[web.RouteDef]:
    """Route definitions to mount with ``auth='admin'``."""

    async def status(_request: web.Request) -> web.Response:
        return _ok({**service.status(), **origin(service)})

    async def extensions(_request: web.Request) -> web.Response:
        return _ok({**origin(service), "extensions": service.extensions()})

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
        web.get("/ws/agents", stream.handle),
    ]
