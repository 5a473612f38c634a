"""HTTP routes of the Ameyo callbacks and their access control.

Paths: ``GET /call_start.php`` and ``GET /ameyo/call-start`` (call start); ``GET /index.php`` and
``GET /ameyo/call-end`` (call end or not answered). The relay's ``.php`` paths are kept so Ameyo's
configuration does not change.

Access (``ameyo.allowed_networks`` then ``ameyo.token``): a peer outside the networks gets 403; a
missing or wrong token 401. The token may come as the query parameter ``token``, the header
``X-Ameyo-Token`` or ``Authorization: Bearer``; it is compared in constant time, never logged, and
removed from the query kept in the request log. The peer is the TCP peer (no X-Forwarded-For).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from . import requestlog

if TYPE_CHECKING:
    from .service import AmeyoService

log = logging.getLogger(__name__)

CALL_START_PATHS = ("/call_start.php", "/ameyo/call-start")
CALL_END_PATHS = ("/index.php", "/ameyo/call-end")


#: The acknowledgement as `web.json_response` writes it (``json.dumps`` defaults), up to the id.
_ACK_HEAD = b'{"success": true, "message": "Data Received", "request_id": "'
_ACK_KEYS = frozenset(("success", "message", "request_id"))
_JSON = "application/json; charset=utf-8"


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    """``body`` as JSON with ``X-Request-ID``; the acknowledgement (the common answer) is filled
    into its fixed text (a request id is 16 hex digits: nothing to escape), the rest encoded."""
    request_id = body["request_id"]
    if status == 200 and body.keys() == _ACK_KEYS and body["success"] is True:
        data = _ACK_HEAD + request_id.encode() + b'"}'
    else:
        data = json.dumps(body).encode()
    return web.Response(body=data, status=status, headers={"X-Request-ID": request_id, "Content-Type": _JSON})


def _error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": error, **extra}, status=status)


def access_denied(service: AmeyoService, request: web.Request) -> tuple[int, str] | None:
    """(status, reason) when the client may not post callbacks, else None. ``request.remote`` is the
    client address (behind ``http.trusted_proxies`` the forwarded one, see `telephonyd.web.proxies`)."""
    config = service.config
    if config.allowed_networks:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return 403, "peer address unknown"
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        if not any(peer in network for network in config.allowed_networks):
            return 403, "network not allowed"
    if config.token is not None:
        presented = request.query.get("token") or request.headers.get("X-Ameyo-Token") or ""
        if not presented:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            presented = value.strip() if scheme.lower() == "bearer" else ""
        expected = config.token.get_secret_value().encode()
        if not presented:
            return 401, "token required"
        if not hmac.compare_digest(presented.encode(), expected):
            return 401, "wrong token"
    return None


def callback_params(request: web.Request) -> dict[str, str]:
    """The query as a plain mapping: the last value of each repeated name (as PHP fills ``$_GET``,
    which the relay and Ameyo's integration rely on), trimmed, ``token`` removed."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name != "token":
            params[name] = value.strip()
    return params


def callback_routes(service: AmeyoService) -> list[web.RouteDef]:
    def handler(kind: Literal["start", "end"]):
        async def handle(request: web.Request) -> web.Response:
            denied = access_denied(service, request)
            if denied is not None:
                status, reason = denied
                service.counts["unauthorized" if status == 401 else "forbidden"] += 1
                service.refusal_log.log(logging.WARNING, f"ameyo_refused_{status}", "callback refused",
                                        {"path": request.path, "peer": request.remote, "reason": reason})
                return _error(status, reason)
            status, body = await service.handle(kind, request.path, callback_params(request))
            return _answer(status, body)

        return handle

    start, end = handler("start"), handler("end")
    return [web.get(p, start, allow_head=False) for p in CALL_START_PATHS] + [
        web.get(p, end, allow_head=False) for p in CALL_END_PATHS
    ]


def admin_routes(service: AmeyoService) -> list[web.RouteDef]:
    async def requests(request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = min(max(int(query.get("limit", "50")), 1), 1000)
            since_s = float(query["since_s"]) if query.get("since_s") else None
        except ValueError:
            return _error(400, "limit and since_s must be numbers", field="limit")
        rows = await requestlog.query(service.store, request_id=query.get("request_id") or None,
                                      call_id=query.get("call_id") or None, since_s=since_s, limit=limit)
        return web.json_response({"success": True, "requests": rows}, dumps=lambda d: requestlog.dumps(d) or "null")

    return [web.get("/api/ameyo/requests", requests, allow_head=False)]
