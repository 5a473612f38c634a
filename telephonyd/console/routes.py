"""HTTP routes of the web console (declared by `telephonyd.wiring.console_feature` when ``http.console`` is true).

Open (``auth='none'``; each does its own checks):
- ``GET /``: the console page; ``GET /console/static/{name}``: its script and style sheet.
- ``POST /console/login`` ``{"token": "<http.admin_token>"}``: 200 ``{"csrf": "..."}`` and the
  session cookie (`sessions`); 401 ``{"success": false, "error": "wrong token"}`` (counted in
  ``telephonyd_http_auth_refused_total{area="console"}``, logged at most once per interval). The token travels
  in the body only, never in a URL.
- ``GET /console/session``: ``{"success": true, "csrf": "..."}`` for a live session (a reloaded
  page), else ``{"success": false}`` (also 200: a first visit is not an error).
- ``POST /console/logout``: ends the session, clears the cookie (204).

Admin (``auth='admin'``: Bearer token, or the session cookie with ``X-CSRF-Token`` on POST):
- ``GET /api/console/summary``: ``{"status": <GET /status>, "outbox": <queries.outbox_view>,
  "features": {"agents": bool, "calls": bool}}``.
- ``POST /api/console/outbox/{id}/retry`` and ``.../drop``: ``{"success": true, "id"}``; 404
  ``{"success": false, "error": "no such row"}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from ..errors import StoreError
from .queries import outbox_view
from .sessions import COOKIE, ConsoleSessions, same_origin, set_cookie

#: Files served from ``static/`` (nothing else is reachable), with their content types.
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
#: Headers of every console answer: no framing, no third-party anything, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("telephonyd.console").joinpath("static", name).read_bytes()


def public_routes(sessions: ConsoleSessions,
                  on_refused: Callable[[web.Request], None] | None = None) -> list[web.RouteDef]:
    """The page, its assets, login, session and logout (mount with ``auth='none'``);
    ``on_refused(request)`` is told of each login with a wrong token (counted and logged, throttled)."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8",
                            headers=SECURITY_HEADERS)

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=STATIC[name], headers=SECURITY_HEADERS)

    async def login(request: web.Request) -> web.Response:
        if not same_origin(request):
            return web.json_response({"success": False, "error": "cross-origin login refused"}, status=403)
        try:
            body = await request.json()
            token = body["token"] if isinstance(body, dict) and isinstance(body.get("token"), str) else None
        except (ValueError, UnicodeDecodeError):
            token = None
        if token is None:
            return web.json_response({"success": False, "error": "body must be {\"token\": \"...\"}"}, status=400)
        made = sessions.login(token, request)
        if made is None:
            if on_refused is not None:
                on_refused(request)
            error = ("no http.admin_token is set: the console logs in only from this host"
                     if sessions.local_only(request) else "wrong token")
            return web.json_response({"success": False, "error": error}, status=401)
        session_id, csrf = made
        response = web.json_response({"success": True, "csrf": csrf}, headers={"Cache-Control": "no-store"})
        set_cookie(response, request, session_id, sessions.ttl_s)
        return response

    async def session(request: web.Request) -> web.Response:
        found = sessions.session(request) if same_origin(request) else None
        if found is None:  # 200, so a browser logs no failed request on every first visit
            return web.json_response({"success": False, "error": "not logged in"}, headers={"Cache-Control": "no-store"})
        return web.json_response({"success": True, "csrf": found.csrf}, headers={"Cache-Control": "no-store"})

    async def logout(request: web.Request) -> web.Response:
        if sessions.accepts(request):  # CSRF header needed: a foreign page cannot log anyone out
            sessions.logout(request.cookies.get(COOKIE))
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/")
        return response

    return [
        web.get("/", page),
        web.get("/console/static/{name}", static),
        web.post("/console/login", login),
        web.get("/console/session", session),
        web.post("/console/logout", logout),
    ]


def admin_routes(status: Callable[[], Awaitable[dict[str, Any]]], outbox: Any, store: Any,
                 features: Callable[[], dict[str, bool]]) -> list[web.RouteDef]:
    """The console's data and actions (mount with ``auth='admin'``)."""

    async def summary(_request: web.Request) -> web.Response:
        try:
            view: dict[str, Any] = await outbox_view(store)
        except StoreError as exc:
            view = {"error": str(exc), "targets": {}, "dead": [], "recent": []}
        body = {"status": await status(), "outbox": view, "features": features()}
        return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))

    def action(verb: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                row_id = int(request.match_info["id"])
            except ValueError:
                return web.json_response({"success": False, "error": "id must be a number"}, status=400)
            done = await (outbox.retry(row_id) if verb == "retry" else outbox.drop(row_id))
            if not done:
                return web.json_response({"success": False, "error": "no such row"}, status=404)
            return web.json_response({"success": True, "id": row_id})

        return handle

    return [
        web.get("/api/console/summary", summary),
        web.post("/api/console/outbox/{id}/retry", action("retry")),
        web.post("/api/console/outbox/{id}/drop", action("drop")),
    ]

