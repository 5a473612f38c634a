"""The HTTP listener with ``http.tls`` and ``http.trusted_proxies`` on real loopback sockets, with
certificates generated at test time (`tests.tls_certs`): HTTPS accepted, plain HTTP and TLS < 1.2
refused, the certificate swapped for new handshakes while an open connection keeps working, client
certificates on admin routes, and the client address behind a trusted proxy (the Ameyo allowlist
judges it; a header from any other peer is ignored)."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from telephonyd.ameyo.routes import access_denied
from telephonyd.config import AmeyoConfig, HTTPConfig
from telephonyd.errors import ConfigError
from telephonyd.web import HTTPServer
from tests.tls_certs import PKI, make_pki, server_cert

TOKEN = "tls-admin-token-0001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_ctx(pki: PKI, *, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


async def make_server(**http: object) -> HTTPServer:
    async def status() -> dict:
        return {"ok": True}

    async def ready() -> bool:
        return True

    server = HTTPServer(HTTPConfig(listen="127.0.0.1:0", admin_token=TOKEN, **http), status=status, ready=ready)
    allow = SimpleNamespace(config=AmeyoConfig(allowed_networks=["198.51.100.0/24"]))

    async def remote(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote})

    async def callback(request: web.Request) -> web.Response:
        denied = access_denied(allow, request)  # type: ignore[arg-type]
        if denied is not None:
            return web.json_response({"error": denied[1], "remote": request.remote}, status=denied[0])
        return web.json_response({"success": True, "remote": request.remote})

    server.add_routes([web.get("/remote", remote), web.get("/index.php", callback)], auth="none")
    server.add_routes([web.get("/api/remote", remote)], auth="admin")
    await server.start()
    return server


def tls_config(pki: PKI, **extra: object) -> dict:
    return {"tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), **extra}}


async def peer_subject(port: int, ctx: ssl.SSLContext) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    try:
        cert = writer.get_extra_info("peercert")
        return dict(pair[0] for pair in cert["subject"])["commonName"]
    finally:
        writer.close()


async def test_https_callbacks_accepted_and_plain_http_refused(pki: PKI) -> None:
    server = await make_server(**tls_config(pki))
    port = server.bound_addresses[0][1]
    try:
        connector = aiohttp.TCPConnector(ssl=client_ctx(pki))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"https://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"https://127.0.0.1:{port}/remote") as resp:
                assert (await resp.json()) == {"remote": "127.0.0.1"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    await resp.read()
        # the raw bytes of a plain request get no HTTP answer: the handshake fails and the socket closes
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert not data.startswith(b"HTTP/")
        old = client_ctx(pki)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await peer_subject(port, old)
    finally:
        await server.stop(1)


async def test_certificate_reload_serves_new_handshakes_and_keeps_open_connections(pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    config = {"tls": {"cert_file": str(cert), "key_file": str(key)}}
    server = await make_server(**config)
    port = server.bound_addresses[0][1]
    try:
        assert await peer_subject(port, client_ctx(pki)) == "telephonyd test"
        connector = aiohttp.TCPConnector(ssl=client_ctx(pki), limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"https://127.0.0.1:{port}/remote") as resp:
                assert resp.status == 200
            renewed_cert, renewed_key = server_cert(pki, "renewed", cn="telephonyd renewed")
            cert.write_bytes(renewed_cert.read_bytes())
            key.write_bytes(renewed_key.read_bytes())
            assert server.reload_tls(server.config.tls) is True
            assert await peer_subject(port, client_ctx(pki)) == "telephonyd renewed"
            async with http.get(f"https://127.0.0.1:{port}/remote") as resp:  # the kept-alive connection
                assert resp.status == 200
            assert server.limits.open >= 1
            # a broken pair (key of another certificate) is refused and the live one stays
            key.write_bytes(pki.server_key.read_bytes())
            assert server.reload_tls(server.config.tls) is False
            assert await peer_subject(port, client_ctx(pki)) == "telephonyd renewed"
    finally:
        await server.stop(1)


async def test_unloadable_certificate_is_a_config_error(pki: PKI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        await make_server(tls={"cert_file": str(tmp_path / "missing.crt"), "key_file": str(pki.server_key)})
    assert caught.value.path == "http.tls"


async def test_client_certificate_required_on_admin_routes_only(pki: PKI) -> None:
    server = await make_server(**tls_config(pki, client_ca_file=str(pki.ca_cert)))
    port = server.bound_addresses[0][1]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for with_cert, admin_status in ((False, 403), (True, 200)):
            connector = aiohttp.TCPConnector(ssl=client_ctx(pki, cert=with_cert))
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.get(f"https://127.0.0.1:{port}/api/remote", headers=auth) as resp:
                    assert resp.status == admin_status
                async with http.get(f"https://127.0.0.1:{port}/api/remote") as resp:
                    assert resp.status == 401  # the token is still needed
                async with http.get(f"https://127.0.0.1:{port}/remote") as resp:
                    assert resp.status == 200
    finally:
        await server.stop(1)


async def get_from(port: int, path: str, source: str, headers: dict[str, str]) -> tuple[int, dict]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
            return resp.status, await resp.json()


async def test_forwarded_address_honoured_only_from_a_trusted_proxy() -> None:
    server = await make_server(trusted_proxies=["127.0.0.1/32"], max_connections_per_client=1)
    port = server.bound_addresses[0][1]
    xff = {"X-Forwarded-For": "192.0.2.66, 198.51.100.7"}
    try:
        # from the proxy: the rightmost hop is the client, the allowlist admits it
        assert await get_from(port, "/index.php", "127.0.0.1", xff) == (200, {"success": True, "remote": "198.51.100.7"})
        # the client's own prepended hop is never used
        status, body = await get_from(port, "/index.php", "127.0.0.1", {"X-Forwarded-For": "198.51.100.7, 192.0.2.66"})
        assert (status, body["remote"]) == (403, "192.0.2.66")
        # Forwarded is not the configured header: ignored, the proxy itself is judged
        status, body = await get_from(port, "/index.php", "127.0.0.1", {"Forwarded": "for=198.51.100.7"})
        assert (status, body["remote"]) == (403, "127.0.0.1")
        # from any other peer the same header is ignored and the allowlist refuses
        status, body = await get_from(port, "/index.php", "127.0.0.2", xff)
        assert (status, body) == (403, {"error": "network not allowed", "remote": "127.0.0.2"})
        # a trusted proxy carries many clients: not held to max_connections_per_client
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        try:
            assert await get_from(port, "/remote", "127.0.0.1", xff) == (200, {"remote": "198.51.100.7"})
        finally:
            for _, writer in conns:
                writer.close()
        # switching to RFC 7239 Forwarded (live, as on SIGHUP)
        server.set_trusted_proxies(server.config.trusted_proxies, "forwarded")
        status, body = await get_from(port, "/index.php", "127.0.0.1",
                                      {"Forwarded": 'for="192.0.2.1";proto=https, for=198.51.100.9', **xff})
        assert (status, body["remote"]) == (200, "198.51.100.9")
        server.set_trusted_proxies([])
        assert (await get_from(port, "/remote", "127.0.0.1", xff))[1] == {"remote": "127.0.0.1"}
    finally:
        await server.stop(1)


async def test_untrusted_client_still_held_to_its_cap() -> None:
    server = await make_server(trusted_proxies=["127.0.0.1/32"], max_connections_per_client=1)
    port = server.bound_addresses[0][1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        async with asyncio.timeout(5):
            while server.limits.by_client.get("127.0.0.2") != 1:
                await asyncio.sleep(0.01)
        with pytest.raises(aiohttp.ClientError):
            await get_from(port, "/remote", "127.0.0.2", {})
        writer.close()
    finally:
        await server.stop(1)


async def test_public_listener_serves_callbacks_only_over_its_own_tls(pki: PKI) -> None:
    server = await make_server(public_listeners=[{"listen": "127.0.0.1:0", **tls_config(pki)}],
                               trusted_proxies=["127.0.0.1/32"])
    admin_port, public_port = server.bound_addresses[0][1], server.public_addresses[0][1]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain:
            async with plain.get(f"http://127.0.0.1:{admin_port}/status", headers=auth) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientError):  # the public side speaks TLS only
                async with plain.get(f"http://127.0.0.1:{public_port}/healthz") as resp:
                    await resp.read()
        connector = aiohttp.TCPConnector(ssl=client_ctx(pki))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as http:
            public = f"https://127.0.0.1:{public_port}"
            for path in ("/status", "/readyz", "/api/remote"):
                async with http.get(public + path, headers=auth) as resp:
                    assert resp.status == 404, path  # admin routes do not exist here, token or not
            async with http.get(public + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(public + "/index.php", headers={"X-Forwarded-For": "198.51.100.7"}) as resp:
                assert (resp.status, (await resp.json())["remote"]) == (200, "198.51.100.7")
        assert server.reload_tls(None, server.config.public_listeners) is True
    finally:
        await server.stop(1)
    assert server.public_addresses == []
