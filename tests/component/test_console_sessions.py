"""The console's login on a real listener: the admin token becomes an HttpOnly SameSite=Strict
cookie; the cookie opens admin GETs and WebSockets; POSTs also need the session's CSRF token."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from telephonyd.config import HTTPConfig
from telephonyd.console.routes import public_routes
from telephonyd.console.sessions import ConsoleSessions
from telephonyd.web import HTTPServer

TOKEN = "console-admin-token"


async def make_server() -> tuple[HTTPServer, str]:
    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    server = HTTPServer(HTTPConfig(listen="127.0.0.1:0", admin_token=TOKEN), status=status, ready=ready)
    sessions = ConsoleSessions(lambda: server.admin_token, ttl_s=60)
    server.session_auth = sessions.accepts
    server.add_routes(public_routes(sessions, lambda r: server.limits.note_auth_refused("console", r.path, r.remote)),
                      auth="none")
    acted: list[str] = []

    async def act(_request: web.Request) -> web.Response:
        acted.append("x")
        return web.json_response({"success": True})

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str("hello")
        await sock.close()
        return sock

    server.add_routes([web.post("/api/act", act), web.get("/ws/test", ws)], auth="admin")
    await server.start()
    host, port = server.bound_addresses[0]
    return server, f"http://{host}:{port}"


async def test_login_cookie_opens_gets_and_websockets_but_posts_need_the_csrf_token() -> None:
    server, base = await make_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "/status") as resp:
                assert resp.status == 401
            async with http.get(base + "/console/session") as resp:
                assert (await resp.json())["success"] is False
            async with http.post(base + "/console/login", json={"token": "wrong"}) as resp:
                assert resp.status == 401
            assert server.limits.auth_refused.labels("console")._value.get() == 1
            async with http.post(base + "/console/login", json={"token": TOKEN}) as resp:
                assert resp.status == 200
                csrf = (await resp.json())["csrf"]
                cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
            async with http.get(base + "/status") as resp:
                assert resp.status == 200
            async with http.ws_connect(base + "/ws/test") as sock:
                assert (await sock.receive_str()) == "hello"
            async with http.post(base + "/api/act") as resp:
                assert resp.status == 401  # the cookie alone never makes a state change
            async with http.post(base + "/api/act", headers={"X-CSRF-Token": "guess"}) as resp:
                assert resp.status == 401
            async with http.post(base + "/api/act", headers={"X-CSRF-Token": csrf,
                                                             "Origin": "http://evil.example"}) as resp:
                assert resp.status == 401
            async with http.post(base + "/api/act", headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 200
            async with http.get(base + "/status", headers={"Origin": "http://evil.example"}) as resp:
                assert resp.status == 401  # a cross-site WebSocket or fetch with the cookie
            async with http.get(base + "/console/session") as resp:
                assert (await resp.json())["csrf"] == csrf
            async with http.post(base + "/console/logout", headers={"X-CSRF-Token": csrf}) as resp:
                assert resp.status == 204
            async with http.get(base + "/status") as resp:
                assert resp.status == 401
    finally:
        await server.stop()


async def test_a_changed_admin_token_ends_every_session() -> None:
    server, base = await make_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(base + "/console/login", json={"token": TOKEN}) as resp:
                assert resp.status == 200
            server.set_admin_token("rotated-token")
            async with http.get(base + "/status") as resp:
                assert resp.status == 401
            assert len(http.cookie_jar) == 1  # the browser still sends it; it opens nothing now
    finally:
        await server.stop()


async def test_page_and_assets_are_served_without_any_third_party_reference() -> None:
    server, base = await make_server()
    try:
        async with aiohttp.ClientSession() as http:
            for path, kind in (("/", "text/html"), ("/console/static/console.js", "text/javascript"),
                               ("/console/static/console.css", "text/css")):
                async with http.get(base + path) as resp:
                    assert resp.status == 200 and resp.content_type == kind
                    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                    text = await resp.text()
                    assert "http://" not in text and "https://" not in text
            async with http.get(base + "/console/static/..%2fsessions.py") as resp:
                assert resp.status == 404
    finally:
        await server.stop()
