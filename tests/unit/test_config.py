"""Configuration loading: merge order, environment overrides, validation errors with dotted paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from telephonyd.config import Config, ConfigError, deep_merge, load_config

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_shipped_example_config_is_valid() -> None:
    config = load_config(REPO / "config" / "telephonyd.yml", environ={})
    assert config.node_id == "ast1"
    assert config.store.url.get_secret_value().startswith("sqlite+aiosqlite:///")
    assert config.did_optimizer.enabled is False
    assert str(config.fastagi.listen[0]) == "127.0.0.1:4573"
    assert str(config.http.listen) == "127.0.0.1:8088"


def test_defaults_bind_loopback_only() -> None:
    config = Config()
    assert all(a.host == "127.0.0.1" for a in config.fastagi.listen)
    assert config.http.listen.host == "127.0.0.1"
    assert [str(n) for n in config.fastagi.allowed_clients] == ["127.0.0.0/8", "::1/128"]


def test_conf_d_merges_in_lexical_order_later_wins(tmp_path: Path) -> None:
    main = write(tmp_path / "telephonyd.yml", "node_id: a\nfastagi:\n  listen: 127.0.0.1:1\n  max_sessions: 10\n")
    write(tmp_path / "conf.d" / "20-b.yml", "node_id: b\nfastagi:\n  listen: [127.0.0.1:2, '[::1]:3']\n")
    write(tmp_path / "conf.d" / "10-a.yml", "node_id: ignored\nhttp:\n  listen: 0.0.0.0:9000\n")
    config = load_config(main, environ={})
    assert config.node_id == "b"
    assert [str(a) for a in config.fastagi.listen] == ["127.0.0.1:2", "[::1]:3"]
    assert config.fastagi.max_sessions == 10  # kept from the main file: mappings merge key by key
    assert str(config.http.listen) == "0.0.0.0:9000"


def test_environment_overrides_file(tmp_path: Path) -> None:
    main = write(tmp_path / "t.yml", "did_optimizer:\n  api_key: from-file\n")
    env = {
        "TELEPHONYD_DID_OPTIMIZER_API_KEY": "did_" + "a" * 64,
        "TELEPHONYD__DID_OPTIMIZER__ENABLED": "true",
        "ENABLE_REAL_SEND": "true",
        "PHONE1_STATE_TTL_SECONDS": "120",
        "INDEX_ENV": "PROD",
    }
    config = load_config(main, environ=env)
    assert config.did_optimizer.api_key.get_secret_value() == "did_" + "a" * 64
    assert config.did_optimizer.enabled is True
    assert config.tops.real_send is True
    assert config.tops.env == "PROD"
    assert config.ameyo.phone1_state_ttl_s == 120.0


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("fastagi:\n  listn: 127.0.0.1:1\n", "fastagi.listn"),
        ("fastagi:\n  listen: nonsense\n", "fastagi.listen.0"),
        ("http:\n  listen: 127.0.0.1:99999\n", "http.listen.port"),
        ("store:\n  url: postgres://x/y\n", "store.url"),
        ("ami:\n  auth: sha1\n", "ami.auth"),
        ("bogus: 1\n", "bogus"),
        ("node_id: 'has space'\n", "node_id"),
    ],
)
def test_bad_values_name_the_dotted_path(tmp_path: Path, text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "t.yml", text), environ={})
    assert info.value.path == path
    assert str(info.value).startswith(path + ":")


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "a.yml", "- 1\n- 2\n"), environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "b.yml", "a: [\n"), environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yml", environ={})


def test_world_readable_file_with_secrets_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yml", "http:\n  admin_token: s3cr3t-token\n", mode=0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_config(path, environ={})
    path.chmod(0o640)
    assert load_config(path, environ={}).http.admin_token.get_secret_value() == "s3cr3t-token"
    url_path = write(tmp_path / "u.yml", "store:\n  url: mysql+aiomysql://u:pw@h:3306/d\n", mode=0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_config(url_path, environ={})
    allowed = write(tmp_path / "v.yml", "allow_readable_secrets: true\nhttp:\n  admin_token: x1234\n", mode=0o644)
    assert load_config(allowed, environ={}).http.admin_token is not None


def test_masked_config_hides_every_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yml",
        "store:\n  url: mysql+aiomysql://td:dbpass123@127.0.0.1:3306/td\n"
        "http:\n  admin_token: tok-abc-123\ndid_optimizer:\n  api_key: did_key_456\n"
        "ami:\n  secret: amisecret789\ntops:\n  test:\n    api_key: topskey000\n",
    )
    config = load_config(path, environ={})
    rendered = repr(config.masked())
    for secret in ("dbpass123", "tok-abc-123", "did_key_456", "amisecret789", "topskey000"):
        assert secret not in rendered
        assert secret in config.secrets() or secret == "dbpass123"
    assert config.masked()["store"]["url"] == "mysql+aiomysql://td:********@127.0.0.1:3306/td"


def test_deep_merge_replaces_lists_and_scalars() -> None:
    assert deep_merge({"a": {"b": 1, "c": [1]}, "d": 1}, {"a": {"c": [2]}, "d": {"x": 1}}) == {
        "a": {"b": 1, "c": [2]},
        "d": {"x": 1},
    }


def test_check_config_command_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yml", "node_id: n1\nhttp:\n  admin_token: topsecret-1\n")
    bad = write(tmp_path / "bad.yml", "fastagi:\n  listen: [1.2.3.4]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPHONYD")}
    run = [sys.executable, "-m", "telephonyd", "check-config", "-c"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "node_id: n1" in ok.stdout and "topsecret-1" not in ok.stdout
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, env=env, timeout=60)
    assert failed.returncode == 78
    assert "fastagi.listen.0" in failed.stderr


@pytest.mark.parametrize(
    ("version", "ok"),
    [("10.11.19-MariaDB-0+deb12u1", True), ("10.6.0-MariaDB", True), ("10.5.23-MariaDB", False),
     ("8.0.36", True), ("5.7.44-log", False), ("11.4.2-MariaDB", True)],
)
def test_database_server_version_check(version: str, ok: bool) -> None:
    from telephonyd.errors import StoreError
    from telephonyd.store.engine import check_server_version

    if ok:
        check_server_version(version)
    else:
        with pytest.raises(StoreError, match="too old"):
            check_server_version(version)
