"""HTTPS and trusted proxies on the daemon as a process: callbacks over TLS, a plain-HTTP client
refused, the certificate renewed on SIGHUP while requests keep flowing (no request fails, an open
connection keeps working, new handshakes see the new certificate), and the Ameyo allowlist judging
the X-Forwarded-For client only when the peer is a trusted proxy."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import aiohttp
import pytest

from tests.tls_certs import make_pki, server_cert

from .daemon import Daemon
from .test_reload import hup, wait_log

pytestmark = pytest.mark.system


async def subject(port: int, ctx: ssl.SSLContext) -> str:
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    try:
        return dict(pair[0] for pair in writer.get_extra_info("peercert")["subject"])["commonName"]
    finally:
        writer.close()


async def test_https_certificate_renewed_on_sighup_while_requests_flow(daemon_factory: Callable[..., Daemon], tmp_path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(0o640)
    daemon = daemon_factory({
        "http": {"tls": {"cert_file": str(cert), "key_file": str(key)}, "trusted_proxies": ["127.0.0.1/32"]},
        "ameyo": {"allowed_networks": ["198.51.100.0/24"]},
    })
    daemon.start()
    port = daemon.http_port
    base = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert await subject(port, ctx) == "telephonyd test"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{port}/healthz") as resp:
                await resp.read()

    answered: list[int] = []
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def flow(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.get(base + "/healthz") as resp:
                    answered.append(resp.status)
            except aiohttp.ClientError as exc:
                failures.append(exc)

    async def fresh_connections() -> None:  # a new handshake per request
        while not stop.is_set():
            connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
            async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as s:
                try:
                    async with s.get(base + "/healthz") as resp:
                        answered.append(resp.status)
                except aiohttp.ClientError as exc:
                    failures.append(exc)

    kept = aiohttp.TCPConnector(ssl=ctx, limit=1)
    async with aiohttp.ClientSession(connector=kept, timeout=aiohttp.ClientTimeout(total=5)) as session:
        workers = [asyncio.create_task(flow(session)), asyncio.create_task(fresh_connections())]
        async with asyncio.timeout(10):
            while len(answered) < 20:
                await asyncio.sleep(0.01)
        renewed_cert, renewed_key = server_cert(pki, "renewed", cn="telephonyd renewed")
        cert.write_bytes(renewed_cert.read_bytes())
        key.write_bytes(renewed_key.read_bytes())
        lines = len(daemon.log_records())
        hup(daemon)
        reloaded = await wait_log(daemon, "TLS certificate reloaded", lines)
        assert reloaded["cert_file"] == str(cert)
        before = len(answered)
        async with asyncio.timeout(10):
            while len(answered) < before + 20:
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.gather(*workers)
    assert failures == [] and set(answered) == {200}
    assert await subject(port, ctx) == "telephonyd renewed"

    # Ameyo callbacks behind a trusted proxy: the forwarded client is judged, a spoofed header
    # from any other peer is ignored.
    async def callback(source: str, xff: str) -> int:
        connector = aiohttp.TCPConnector(ssl=ctx, local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as s:
            async with s.get(base + "/ameyo/call-end", params={"unique_id": ""},
                             headers={"X-Forwarded-For": xff}) as resp:
                return resp.status

    lines = len(daemon.log_records())
    assert await callback("127.0.0.1", "198.51.100.7, 192.0.2.1") == 403
    refused = await wait_log(daemon, "callback refused", lines)  # logged with the forwarded client
    assert refused["peer"] == "192.0.2.1" and refused["reason"] == "network not allowed"
    assert await callback("127.0.0.2", "198.51.100.7") == 403  # (the same refusal's log is throttled)
    assert await callback("127.0.0.1", "198.51.100.7") == 400  # past the allowlist: the empty unique_id


def test_unloadable_certificate_stops_the_daemon_with_exit_78(daemon_factory: Callable[..., Daemon], tmp_path) -> None:
    daemon = daemon_factory({"http": {"tls": {"cert_file": str(tmp_path / "missing.pem"),
                                              "key_file": str(tmp_path / "missing.key")}}})
    daemon.start(wait_ready=False)
    assert daemon.proc is not None and daemon.proc.wait(timeout=30) == 78
    assert any(r.get("msg") == "configuration error" and "http.tls" in r.get("error", "") for r in daemon.log_records())
