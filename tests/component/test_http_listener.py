"""The HTTP listener on a real socket: health without auth, admin token on everything else."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from telephonyd.config import HTTPConfig
from telephonyd.web import HTTPServer


async def make_server(token: str | None, ready: bool = True) -> HTTPServer:
    async def status() -> dict:
        return {"ok": True, "components": {}}

    async def is_ready() -> bool:
        return ready

    config = HTTPConfig(listen="127.0.0.1:0", admin_token=token)
    server = HTTPServer(config, status=status, ready=is_ready)

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    server.add_routes([web.get("/api/echo", echo)], auth="admin")
    server.add_routes([web.get("/open", echo)], auth="none")
    await server.start()
    return server


@pytest.mark.parametrize("token", [None, "s3cret-token"])
async def test_admin_token_guards_everything_but_healthz(token: str | None) -> None:
    server = await make_server(token)
    host, port = server.bound_addresses[0]
    base = f"http://{host}:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200 and (await resp.json()) == {"ok": True}
            for path in ("/readyz", "/status", "/api/echo"):
                async with http.get(base + path) as resp:
                    assert resp.status == (401 if token else 200), path
                    if token:
                        body = await resp.json()
                        assert body["success"] is False and token not in await resp.text()
                async with http.get(base + path, headers={"Authorization": "Bearer wrong"}) as resp:
                    assert resp.status == (401 if token else 200)
                async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as resp:
                    assert resp.status == 200, path
            async with http.get(base + "/open") as resp:
                assert resp.status == 200
    finally:
        await server.stop(1)
    assert server.health() == {"ok": False, "state": "stopped", "addresses": []}


async def test_readyz_reports_not_ready_with_503() -> None:
    server = await make_server(None, ready=False)
    host, port = server.bound_addresses[0]
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/readyz") as resp:
                assert resp.status == 503 and (await resp.json()) == {"ready": False}
    finally:
        await server.stop(1)


async def test_token_reload_takes_effect() -> None:
    server = await make_server("old-token-1")
    host, port = server.bound_addresses[0]
    try:
        server.set_admin_token("new-token-2")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/status", headers={"Authorization": "Bearer old-token-1"}) as r:
                assert r.status == 401
            async with http.get(f"http://{host}:{port}/status", headers={"Authorization": "Bearer new-token-2"}) as r:
                assert r.status == 200
    finally:
        await server.stop(1)


async def test_public_readyz_needs_no_token_and_reveals_only_readiness() -> None:
    from telephonyd.config import HTTPConfig

    for public, expected in ((True, 200), (False, 401)):
        config = HTTPConfig(listen="127.0.0.1:0", admin_token="s3cret-token", public_readyz=public)

        async def ready() -> bool:
            return True

        async def status() -> dict:
            return {"secret": "internal"}

        server = HTTPServer(config, status=status, ready=ready)
        await server.start()
        try:
            host, port = server.bound_addresses[0]
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{host}:{port}/readyz") as resp:
                    assert resp.status == expected
                    if public:
                        assert await resp.json() == {"ready": True}
                async with http.get(f"http://{host}:{port}/status") as resp:
                    assert resp.status == 401
        finally:
            await server.stop()
