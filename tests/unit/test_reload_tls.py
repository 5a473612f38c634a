"""SIGHUP reload of the HTTPS and proxy settings (`telephonyd.reload.reload_config`): certificate files
re-read on every reload, trusted proxies applied live, turning TLS on/off or changing the client CAs
named as needing a restart."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from telephonyd.config import Config
from tests.unit.test_reload_marks import apply_reload

TLS = {"cert_file": "/etc/telephonyd/tls/cert.pem", "key_file": "/etc/telephonyd/tls/key.pem"}


class FakeHTTP:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_admin_token(self, token: str | None) -> None:
        self.calls.append(("token", token))

    def set_trusted_proxies(self, networks: Any, header: str | None = None) -> None:
        self.calls.append(("proxies", ([str(n) for n in networks], header)))

    def reload_tls(self, config: Any, public: Any = ()) -> bool:
        if config is not None:
            self.calls.append(("tls", str(config.cert_file)))
        self.calls.extend(("tls", str(p.tls.cert_file)) for p in public if p.tls is not None)
        return True


def app(config: Config) -> SimpleNamespace:
    return SimpleNamespace(config=config, http=FakeHTTP(), reloaders=[])


def test_certificate_reread_even_when_nothing_changed() -> None:
    config = Config.model_validate({"http": {"tls": TLS}})
    target = app(config)
    assert apply_reload(target, config) == []
    assert ("tls", TLS["cert_file"]) in target.http.calls


def test_new_certificate_paths_and_proxies_are_live() -> None:
    old = Config.model_validate({"http": {"tls": TLS}})
    new = Config.model_validate({"http": {"tls": {**TLS, "cert_file": "/etc/telephonyd/tls/new.pem"},
                                          "trusted_proxies": ["10.0.0.0/8"], "proxy_header": "forwarded"}})
    target = app(old)
    assert apply_reload(target, new) == []
    assert ("tls", "/etc/telephonyd/tls/new.pem") in target.http.calls
    assert ("proxies", (["10.0.0.0/8"], "forwarded")) in target.http.calls
    assert target.config.http.trusted_proxies == new.http.trusted_proxies


def test_tls_on_off_and_client_cas_need_a_restart(caplog) -> None:
    plain = Config()
    with_tls = Config.model_validate({"http": {"tls": TLS}})
    with_ca = Config.model_validate({"http": {"tls": {**TLS, "client_ca_file": "/etc/telephonyd/tls/ca.pem"}}})
    for old, new, key in ((plain, with_tls, "http.tls"), (with_tls, plain, "http.tls"),
                          (with_tls, with_ca, "http.tls.client_ca_file")):
        target = app(old)
        with caplog.at_level(logging.INFO):
            assert apply_reload(target, new) == [key]
        # the listener keeps the mode it started with; a TLS one re-reads its certificate
        assert [c for c in target.http.calls if c[0] == "tls"] == ([("tls", TLS["cert_file"])] if old.http.tls else [])
        assert target.config.http == old.http
    target = app(Config())
    assert apply_reload(target, Config.model_validate({"ami": {"tls": {"enabled": True}}})) == ["ami.tls.enabled"]


def test_public_listener_certificates_are_reread_and_their_changes_need_a_restart() -> None:
    public = [{"listen": "0.0.0.0:8443", "tls": {**TLS, "cert_file": "/etc/telephonyd/tls/public.pem"}}]
    old = Config.model_validate({"http": {"public_listeners": public}})
    target = app(old)
    assert apply_reload(target, old) == []
    assert target.http.calls.count(("tls", "/etc/telephonyd/tls/public.pem")) == 1
    moved = Config.model_validate({"http": {"public_listeners": [{**public[0], "listen": "0.0.0.0:9443"}]}})
    assert apply_reload(app(old), moved) == ["http.public_listeners"]
