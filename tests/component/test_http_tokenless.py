"""Secure by default: with no ``http.admin_token`` configured, the admin routes, the console login
and Socket.IO answer only clients on this host. A client elsewhere (here: named by a trusted proxy
on loopback, as a reverse proxy in front of the daemon would) gets 401, whatever it presents."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from telephonyd.config import HTTPConfig
from telephonyd.console.routes import public_routes
from telephonyd.console.sessions import ConsoleSessions
from telephonyd.web import HTTPServer
from telephonyd.web.proxies import is_loopback

OUTSIDE = {"X-Forwarded-For": "198.51.100.7"}


async def make_server(**http: Any) -> tuple[HTTPServer, ConsoleSessions]:
    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    server = HTTPServer(HTTPConfig(listen="127.0.0.1:0", trusted_proxies=["127.0.0.1/32"], **http),
                        status=status, ready=ready)
    sessions = ConsoleSessions(lambda: server.admin_token, ttl_s=60, tokenless=server.authorized)
    server.session_auth = sessions.accepts
    server.add_routes(list(public_routes(sessions)), auth="none")
    await server.start()
    return server, sessions


async def answer(server: HTTPServer, method: str, path: str, headers: dict[str, str] | None = None,
                 body: Any = None) -> tuple[int, Any]:
    port = server.bound_addresses[0][1]
    origin = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{origin}{path}", headers={"Origin": origin, **(headers or {})}, json=body) as response:
        return response.status, await response.json(content_type=None)


async def call(server: HTTPServer, method: str, path: str, headers: dict[str, str] | None = None,
               body: Any = None) -> int:
    return (await answer(server, method, path, headers, body))[0]


async def test_no_admin_token_admits_this_host_only() -> None:
    server, _ = await make_server()
    try:
        assert await call(server, "GET", "/status") == 200
        assert await call(server, "GET", "/status", OUTSIDE) == 401
        assert await call(server, "GET", "/status", {**OUTSIDE, "Authorization": "Bearer anything"}) == 401
        assert await call(server, "GET", "/healthz", OUTSIDE) == 200  # public, as before
        assert await call(server, "POST", "/console/login", body={"token": "anything"}) == 200
        assert await call(server, "POST", "/console/login", OUTSIDE, body={"token": "anything"}) == 401
        status, refused = await answer(server, "POST", "/console/login", OUTSIDE, body={"token": "anything"})
        assert (status, refused["success"]) == (401, False) and "http.admin_token" in refused["error"]
        # Once a token is set (SIGHUP), this host needs it too.
        server.set_admin_token("now-a-token-0001")
        assert await call(server, "GET", "/status") == 401
        assert await call(server, "GET", "/status", {**OUTSIDE, "Authorization": "Bearer now-a-token-0001"}) == 200
        assert await call(server, "POST", "/console/login", OUTSIDE, body={"token": "now-a-token-0001"}) == 200
        assert (await answer(server, "POST", "/console/login", OUTSIDE, body={"token": "wrong"}))[1]["error"] \
            == "wrong token"
    finally:
        await server.stop(1.0)


@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("198.51.100.7", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False),
    ("unknown", False), ("", False), (None, False),
])
def test_loopback_addresses(address: str | None, local: bool) -> None:
    assert is_loopback(address) is local
