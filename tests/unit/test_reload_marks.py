"""Every config field is marked live or restart (`telephonyd.reloadmarks`), and a SIGHUP reload
(`telephonyd.reload.reload_config`) keeps the mark's word: a live key reaches the running part
that uses it, a restart key is named in ``needs_restart``; none is both or neither."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from telephonyd.ameyo import AmeyoService
from telephonyd.calllog import CallLogHandler
from telephonyd.config import Config
from telephonyd.didselect import DIDSelectService
from telephonyd.presence.service import PresenceService
from telephonyd.reload import changed_keys, reload_config
from telephonyd.reloadmarks import marks, reload_marks, section_of
from telephonyd.store import Store
from telephonyd.upstream.did_optimizer import DIDOptimizerSender
from telephonyd.upstream.tops import TopsSender
from tests.tls_certs import make_pki

TLS = {"cert_file": "/etc/telephonyd/tls/cert.pem", "key_file": "/etc/telephonyd/tls/key.pem"}


def apply_reload(app: Any, new: Config) -> list[str]:
    """Reload ``app`` (a stand-in with ``config``, ``http``, ``reloaders``) as `App.reload` does:
    it keeps the returned config and reports ``needs_restart``."""
    reloaded = reload_config(app.config, new, http=app.http, reloaders=app.reloaders)
    app.config = reloaded.config
    return reloaded.needs_restart
MARKS = reload_marks(Config)
LIVE = sorted(k for k, m in MARKS.items() if m == "live")
RESTART = sorted(k for k, m in MARKS.items() if m == "restart")


def sections(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    if model not in seen:
        seen.append(model)
        for field in model.model_fields.values():
            section, _ = section_of(field.annotation)
            if section is not None:
                sections(section, seen)
    return seen


@pytest.mark.parametrize("section", sections(Config, []), ids=lambda s: s.__name__)
def test_each_section_marks_each_of_its_fields_exactly_once(section: type[BaseModel]) -> None:
    declared = section.__dict__["RELOAD"]
    expected = {name for name, f in section.model_fields.items() if section_of(f.annotation) in ((None, False),)
                or section_of(f.annotation)[1]}
    assert set(declared) == expected, section.__name__


def test_a_field_marked_both_ways_is_refused() -> None:
    with pytest.raises(ValueError, match="both live and restart"):
        marks(live="a b", restart="b")


# -- a changed value for each key ----------------------------------------------------------------


def base_for(key: str) -> dict[str, Any]:
    """The config a key is changed from: ``http.tls.*`` needs TLS on, the rest starts from defaults."""
    if key.startswith("vicidial."):
        return {"vicidial": {"url": "mysql+aiomysql://ro@127.0.0.1/asterisk"}}
    return {"http": {"tls": dict(TLS)}} if key.startswith("http.tls.") else {}


def candidates(value: Any) -> list[Any]:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, 2]
    if isinstance(value, float):
        return [value * 2 if value else 1.0, value / 2]
    if isinstance(value, str):
        return ["DEBUG", "json", "forwarded", "md5", "asterisk", "dashboard", "PROD", "Asia/Seoul",
                "off", "normal", "node-b", "mysql+aiomysql://u@127.0.0.1/db", "mqtt://127.0.0.1:1884", value + "x", "https://example.test/"]
    if isinstance(value, dict):
        return [{"DND": "away", "X": "paused"}, {"CAMP": "+15551230000"}, {"campaign": ["CAMP"]}]
    if isinstance(value, list):
        return [["10.0.0.0/8"], ["CAMPX"], ["127.0.0.1:4599"], [], [{"listen": "127.0.0.1:9443"}],
                [{"name": "crm", "url": "https://crm.example.test/hook"}], ["mysql+aiomysql://u@127.0.0.1/db"]]
    if isinstance(value, BaseModel):  # a host:port
        return ["127.0.0.1:9999"]
    return ["/etc/telephonyd/tls/other.pem", "s3cret-value-0001", "registrar.example.test", "^PJSIP/1", dict(TLS)]


def value_at(model: Any, key: str) -> Any:
    for part in key.split("."):
        model = getattr(model, part)
    return model


def set_at(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def changed(key: str, first: list[Any] = []) -> tuple[Config, Config]:  # noqa: B006 - read only
    old = Config.model_validate(base_for(key))
    for candidate in [*first, *candidates(value_at(old, key))]:
        data = base_for(key)
        set_at(data, key, candidate)
        try:
            new = Config.model_validate(data)
        except ValidationError:
            continue
        if any(k == key or k.startswith(key + ".") for k in changed_keys(old, new)):
            return old, new
    raise AssertionError(f"no valid changed value for {key}")


# -- the running parts a reload reaches -----------------------------------------------------------


class FakeHTTP:
    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def set_admin_token(self, token: str | None) -> None:
        self.seen["admin_token"] = token

    def set_trusted_proxies(self, networks: Any, header: str | None = None) -> None:
        self.seen["trusted_proxies"], self.seen["proxy_header"] = list(networks), header

    def reload_tls(self, config: Any, public: Any = ()) -> bool:
        if config is not None:
            self.seen["tls.cert_file"], self.seen["tls.key_file"] = config.cert_file, config.key_file
        return True


def running(config: Config) -> SimpleNamespace:
    """The reconfigurable parts, built as the app builds them, and the app shape reload uses."""
    store = Store("sqlite+aiosqlite:///:memory:", schemas=[])
    parts = SimpleNamespace(
        did_optimizer=DIDOptimizerSender(config.did_optimizer, None),
        tops=TopsSender(config.tops, None),
        call_log=CallLogHandler(config.call_log, None),
        did_select=DIDSelectService(config.did_select, config.did_optimizer, store, node_id="a"),
        ameyo=AmeyoService(config.ameyo, config.tops, store, SimpleNamespace(notify=lambda: None), node_id="a"),
        presence=PresenceService(config.presence, ami=None, contacts=None, node_id="a"),
    )
    reloaders = [p.reconfigure for p in vars(parts).values()]
    return SimpleNamespace(config=config, http=FakeHTTP(), reloaders=reloaders, parts=parts)


def seen_by_part(app: SimpleNamespace, key: str) -> Any:
    section, _, rest = key.partition(".")
    if section == "http":
        return app.http.seen[rest]
    if section == "logging":
        return logging.getLevelName(logging.getLogger().level)
    if section == "allow_readable_secrets":
        return app.config.allow_readable_secrets
    return value_at(vars(app.parts)[section].config, rest)


def plain(value: Any) -> Any:
    value = value.get_secret_value() if isinstance(value, SecretStr) else value
    return [str(v) for v in value] if isinstance(value, list) else value


@pytest.mark.parametrize("key", LIVE)
def test_a_live_key_reaches_the_part_that_uses_it(key: str, tmp_path: Path) -> None:
    # the TopS.II client loads its CA file when the section is applied: a real one
    old, new = changed(key, [str(make_pki(tmp_path).ca_cert)] if key == "tops.ca_file" else [])
    app = running(old)
    level = logging.getLogger().level
    try:
        assert apply_reload(app, new) == []
        got = seen_by_part(app, key)
    finally:
        logging.getLogger().setLevel(level)
    assert plain(got) == plain(value_at(new, key)) != plain(value_at(old, key))


@pytest.mark.parametrize("key", RESTART)
def test_a_restart_key_is_named(key: str) -> None:
    old, new = changed(key)
    app = running(old)
    level = logging.getLogger().level
    try:
        named = apply_reload(app, new)
    finally:
        logging.getLogger().setLevel(level)
    assert any(k == key or k.startswith(key + ".") for k in named), named
    assert named == changed_keys(old, new)  # (a validator may move a sibling restart key with it)
    assert value_at(app.config, key) == value_at(old, key)  # the running value is what is reported


@pytest.mark.parametrize("key", ["call_log.variables.did", "outbox.concurrency", "presence.technologies",
                                 "logging.format", "http.max_body_bytes", "http.listen"])
def test_the_keys_once_reported_as_applied_are_applied_or_named(key: str) -> None:
    old, new = changed(key)
    app = running(old)
    named = apply_reload(app, new)
    if key == "call_log.variables.did":
        assert named == []
        assert app.parts.call_log.variables.did == tuple(new.call_log.variables.did)
    else:
        assert named and named[0].startswith(key)
