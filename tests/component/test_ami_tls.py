"""AMI over TLS: the daemon's AMIClient logs in (plain and MD5) to the fake Asterisk manager in its
TLS mode, with a certificate generated at test time, and resyncs; the dialogue inside TLS is the one
recorded against a real Asterisk 22.10.1 with ``tlsenable=yes`` (tests/fixtures/asterisk-22.10.1/ami/tls,
recorded by tests/tools/record_ami_tls.py); a certificate from another CA or for another host name is
refused before any AMI byte is sent."""

from __future__ import annotations

import functools
import json
import ssl
from pathlib import Path
from typing import Any

import pytest

from telephonyd.ami import AMIClient
from telephonyd.config import AMIConfig
from telephonyd.errors import ConfigError
from tests.fakes.ami import FakeAMIServer
from tests.fakes.ami_replies import ReplyBook
from tests.fakes.ami_wire import AMI_RECORDINGS, Pairs, split_raw, value_of
from tests.helpers import running, wait_until
from tests.tls_certs import PKI, issue, make_pki

SECRET = "s3cret-ami-tls"
TLS_RECORDINGS = AMI_RECORDINGS / "tls"
#: Values that differ per session (ActionIDs, the MD5 challenge and key, clocks, session ids).
VARYING = {"actionid", "challenge", "key", "secret", "timestamp", "uptime", "lastreload", "eventtv",
           "sessionid", "sessiontv", "remoteaddress"}

until = functools.partial(wait_until, timeout=5.0, interval=0.005)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_ctx(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def recording(auth: str) -> tuple[list[Pairs], list[Pairs], dict[str, Any]]:
    """(messages sent, messages received, the ``open`` record) of ``ami_tls_<auth>.jsonl``."""
    records = [json.loads(line) for line in (TLS_RECORDINGS / f"ami_tls_{auth}.jsonl").read_text().splitlines()]
    joined = {d: "".join(r["data"] for r in records if r["dir"] == d).encode("latin-1") for d in ("c2s", "s2c")}
    received = split_raw(joined["s2c"].partition(b"\r\n")[2])  # the banner line stands alone
    return split_raw(joined["c2s"]), received, next(r for r in records if r["dir"] == "open")


def shape(pairs: Pairs) -> list[tuple[str, str]]:
    return [(k, "" if k.lower() in VARYING else v) for k, v in pairs]


def config(fake: FakeAMIServer, pki: PKI, auth: str, **tls: Any) -> AMIConfig:
    return AMIConfig(enabled=True, port=fake.port, secret=SECRET, auth=auth, connect_timeout_s=1.0,
                     action_timeout_s=1.0, backoff_base_s=0.02, backoff_max_s=0.1,
                     tls={"enabled": True, "ca_file": str(pki.ca_cert), **tls})


@pytest.mark.parametrize("auth", ["plain", "md5"])
def test_recorded_tls_dialogue_matches_the_fakes_replies(auth: str) -> None:
    sent, received, opened = recording(auth)
    assert opened["tls_version"] in ("TLSv1.2", "TLSv1.3")
    names = [value_of(m, "Action") for m in sent]
    assert names == (["Challenge"] if auth == "md5" else []) + ["Login", "CoreSettings", "Ping", "Logoff"]
    book = ReplyBook()
    replies = {value_of(m, "ActionID"): m for m in received if value_of(m, "Response")}
    for action in sent:
        name, aid = value_of(action, "Action"), value_of(action, "ActionID")
        if name == "Login":
            expected = book.single("Login", aid, where="Authentication accepted")
        else:
            expected = book.single(name, aid)
        assert shape(replies[aid]) == shape(split_raw(expected)[0]), name


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_login_over_tls_and_resync(auth: str, pki: PKI) -> None:
    async with FakeAMIServer(secret=SECRET, ssl=server_ctx(pki.server_cert, pki.server_key)) as fake:
        fake.add_endpoint("1010")
        fake.register("1010")
        client = AMIClient(config(fake, pki, auth))
        listed: list[int] = []

        async def resync(c: AMIClient) -> None:
            _, items = await c.list_action({"Action": "PJSIPShowContacts"})
            listed.append(len(items))

        client.on_connect(resync)
        async with running(client):
            await until(lambda: client.connected and listed)
            assert listed == [1] and client.asterisk_version == "22.10.1"
            assert (await client.action({"Action": "Ping"})).get("Response") == "Success"
        sent, _, _ = recording(auth)
        login = [shape(p) for p in fake.actions if value_of(p, "Action") in ("Challenge", "Login", "CoreSettings")]
        assert login == [shape(p) for p in sent if value_of(p, "Action") in ("Challenge", "Login", "CoreSettings")]


async def test_certificate_of_another_ca_or_host_is_refused(pki: PKI, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    async with FakeAMIServer(secret=SECRET, ssl=server_ctx(other.server_cert, other.server_key)) as fake:
        client = AMIClient(config(fake, pki, "plain"))
        async with running(client):
            await until(lambda: "CERTIFICATE_VERIFY_FAILED" in (client.health().get("last_error") or ""))
            assert not client.connected and fake.actions == []
        # verify: false (a lab's self-signed certificate) accepts it, with a warning
        client = AMIClient(config(fake, pki, "plain", verify=False))
        async with running(client):
            await until(lambda: client.connected)
    wrong_host = issue(pki.dir, pki.ca_cert, pki.ca_key, "elsewhere", cn="pbx.example", san="DNS:pbx.example")
    async with FakeAMIServer(secret=SECRET, ssl=server_ctx(*wrong_host)) as fake:
        client = AMIClient(config(fake, pki, "plain"))
        async with running(client):
            await until(lambda: "CERTIFICATE_VERIFY_FAILED" in (client.health().get("last_error") or ""))
            assert fake.actions == []
        # the chain alone (check_hostname: false), or the name the certificate carries, is accepted
        for tls in ({"check_hostname": False}, {"server_hostname": "pbx.example"}):
            client = AMIClient(config(fake, pki, "plain", **tls))
            async with running(client):
                await until(lambda c=client: c.connected)


async def test_unloadable_ca_is_a_config_error(pki: PKI, tmp_path: Path) -> None:
    async with FakeAMIServer(secret=SECRET) as fake:
        client = AMIClient(config(fake, pki, "plain", ca_file=str(tmp_path / "missing.pem")))
        with pytest.raises(ConfigError) as caught:
            await client.start()
        assert caught.value.path == "ami.tls"
