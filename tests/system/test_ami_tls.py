"""The daemon as a process logs in to the fake Asterisk manager over TLS (certificate generated at
test time, verified against its CA) and resyncs ps_contacts, again after Asterisk comes back."""

from __future__ import annotations

import ssl

import pytest

from tests.fakes.ami import FakeAMIServer
from tests.tls_certs import make_pki

from .test_ami_side import _async, rows, until

pytestmark = pytest.mark.system


async def test_daemon_logs_in_over_tls_and_resyncs(daemon_factory, tmp_path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    async with FakeAMIServer(secret="ami-tls-s3cret", ssl=server) as ami:
        ami.add_endpoint("1010")
        first = ami.register("1010")
        daemon = daemon_factory({"ami": {"enabled": True, "port": ami.port, "secret": "ami-tls-s3cret", "auth": "md5",
                                         "tls": {"enabled": True, "ca_file": str(pki.ca_cert)}}})
        daemon.start()
        await until(lambda: _async(set(rows(daemon)) == {first.id}), what="the contact's row over TLS")
        assert [p for p in ami.actions if dict(p).get("Action") == "Login"][0][1] == ("AuthType", "MD5")

        await ami.shutdown()
        ami.remove_contacts_silently([first.id])
        second = ami.register("1010", uri="sip:1010@127.0.0.1:5999")
        await ami.boot()
        await until(lambda: _async(set(rows(daemon)) == {second.id}), what="resync over TLS after the restart")
        status = (await daemon.get("/status"))[1]
        assert status["components"]["ami"]["ok"] is True and ami.logins == 2
