"""TopsSender against the fake TopS.II over real sockets: wire format, reply classes, timeouts, TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from telephonyd.config import TopsConfig, TopsTarget
from telephonyd.outbox import OutboxRow
from telephonyd.upstream.tops import TopsSender
from tests.fakes.tops import FakeTops, Reply

BODY = {"predictiveCallCreateCallEnd": {
    "callId": 99999999, "callStartTime": "2026-01-20 11:16:41", "callEndTime": "2026-01-20 11:20:00",
    "subCtiHistoryId": "d336-1", "targetTel": "09011112222", "predictiveStaffId": "スタッフ7"}}


def row(payload: dict[str, Any] | None = None, attempts: int = 0) -> OutboxRow:
    payload = payload or {"api": "createCallEnd", "body": BODY, "request_id": "r1", "gates": ["g"]}
    return OutboxRow(id=1, target="tops", key="k", payload=payload, attempts=attempts, created_at=0.0)


def config(fake_tops: FakeTops, **overrides: Any) -> TopsConfig:
    values: dict[str, Any] = {"real_send": True, "timeout_s": 0.5,
                              "test": TopsTarget(base_url=fake_tops.base_url, api_key=fake_tops.api_key)}
    return TopsConfig(**{**values, **overrides})


class Results:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str, dict[str, Any]]] = []

    async def __call__(self, payload: dict[str, Any], outcome: str, **reply: Any) -> None:
        self.calls.append((payload, outcome, reply))


async def test_wire_format_and_success(fake_tops, http_session):
    results = Results()
    sender = TopsSender(config(fake_tops), http_session, on_result=results)
    delivery = await sender.send(row())
    assert (delivery.outcome, delivery.status) == ("delivered", 200)
    assert fake_tops.violations == []
    [received] = fake_tops.received
    assert received.api == "createCallEnd" and received.fields == BODY["predictiveCallCreateCallEnd"]
    assert received.headers["X-FastHelp-API-Key"] == fake_tops.api_key
    [(payload, outcome, reply)] = results.calls
    assert payload["request_id"] == "r1" and outcome == "delivered"
    assert reply["status"] == 200 and reply["attempts"] == 1 and '"success"' in reply["body"]
    assert sender.health() == {"ok": True, "state": "sending", "env": "TEST", "sent": 1, "last_error": None}


async def test_prod_env_selects_the_prod_target(fake_tops, http_session):
    cfg = config(fake_tops, env="prod", test=TopsTarget(base_url="http://127.0.0.1:9", api_key="x" * 32),
                 prod=TopsTarget(base_url=fake_tops.base_url, api_key=fake_tops.api_key))
    assert (await TopsSender(cfg, http_session).send(row())).outcome == "delivered"


async def test_dry_run_sends_nothing(fake_tops, http_session):
    results = Results()
    delivery = await TopsSender(config(fake_tops, real_send=False), http_session, on_result=results).send(row())
    assert delivery.outcome == "delivered" and delivery.response == "dry_run"
    assert fake_tops.received == [] and [c[1] for c in results.calls] == ["dry_run"]


@pytest.mark.parametrize(("reply", "outcome", "unhealthy"), [
    (Reply.fail("WTYP0030"), "dead", True),
    (Reply.fail("WTYP0020"), "dead", True),
    (Reply.fail("ETYP0040"), "retry", False),
    (Reply.fail("WTYP0010", "WPRDEXTC3202"), "dead", False),
    (Reply.http(500), "retry", False),
    (Reply.success(delay_s=2.0), "retry", False),  # slower than timeout_s
    (Reply.hang(), "retry", False),
])
async def test_reply_classes(reply, outcome, unhealthy, fake_tops, http_session):
    fake_tops.default = reply
    results = Results()
    sender = TopsSender(config(fake_tops), http_session, on_result=results)
    delivery = await sender.send(row())
    assert (delivery.outcome, delivery.unhealthy) == (outcome, unhealthy)
    assert sender.health()["ok"] is not unhealthy
    assert results.calls[0][1] == outcome and results.calls[0][2]["error"]


async def test_wrong_key_is_refused(fake_tops, http_session):
    cfg = config(fake_tops, test=TopsTarget(base_url=fake_tops.base_url, api_key="wrong" * 6))
    delivery = await TopsSender(cfg, http_session).send(row())
    assert delivery.outcome == "dead" and delivery.status == 400
    assert fake_tops.violations == ["missing or wrong X-FastHelp-API-Key"]


async def test_no_key_configured_waits_unhealthy(fake_tops, http_session):
    cfg = config(fake_tops, test=TopsTarget(base_url=fake_tops.base_url))
    delivery = await TopsSender(cfg, http_session).send(row())
    assert (delivery.outcome, delivery.unhealthy) == ("retry", True) and fake_tops.received == []


async def test_nothing_listening_is_retried(http_session):
    cfg = TopsConfig(real_send=True, test=TopsTarget(base_url="http://127.0.0.1:9", api_key="k" * 32), timeout_s=1)
    delivery = await TopsSender(cfg, http_session).send(row())
    assert delivery.outcome == "retry" and "Cannot connect" in delivery.error


async def test_malformed_payload_is_a_dead_letter(fake_tops, http_session):
    delivery = await TopsSender(config(fake_tops), http_session).send(row({"api": "deleteEverything", "body": {}}))
    assert delivery.outcome == "dead" and fake_tops.received == []


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


async def test_tls_is_verified(self_signed, http_session):
    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    fake_tops = FakeTops()
    await fake_tops.start(ssl_context=context)
    try:
        assert fake_tops.base_url.startswith("https://")
        untrusted = await TopsSender(config(fake_tops), http_session).send(row())
        assert untrusted.outcome == "retry" and fake_tops.received == []
        trusted = await TopsSender(config(fake_tops, ca_file=str(cert)), http_session).send(row())
        assert trusted.outcome == "delivered" and len(fake_tops.received) == 1
    finally:
        await fake_tops.close()


async def test_request_bytes_are_those_of_aiohttps_own_form_encoding(http_session):
    """The sender builds the form body itself; what goes on the wire (request line, headers in
    their order, body) is what aiohttp writes for ``data={"jsonData": <JSON>}``."""
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        requests.append(head + await reader.readexactly(length))
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n{"result":"success"}')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        base_url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        cfg = TopsConfig(real_send=True, timeout_s=2.0, test=TopsTarget(base_url=base_url, api_key="k" * 32))
        sent = row({"api": "createCallEnd", "body": {"predictiveCallCreateCallEnd": {
            **BODY["predictiveCallCreateCallEnd"], "memo": "a b+c&d=e%f \"g\" \u00e9\u3042\U0001f600 /?#"}}})
        assert (await TopsSender(cfg, http_session).send(sent)).outcome == "delivered"
        text = json.dumps(sent.payload["body"], ensure_ascii=False, separators=(",", ":"))
        headers = {"X-FastHelp-API-Key": "k" * 32, "Accept": "application/json", "Idempotency-Key": "tops:k"}
        async with http_session.post(base_url + "/fasthelp5-server/service/callmanage/predictiveCallApiService/"
                                     "createCallEnd.json", data={"jsonData": text}, headers=headers,
                                     allow_redirects=False) as reply:
            await reply.read()
    finally:
        server.close()
        await server.wait_closed()
    ours, aiohttps = requests
    assert b"Content-Type: application/x-www-form-urlencoded\r\n" in ours
    assert ours == aiohttps
