"""Strict YAML reading and relative paths anchored at the config file's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephonyd.cli import printable
from telephonyd.config import load_config
from telephonyd.configfiles import anchor_paths
from telephonyd.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("text", "key", "lines"), [
    ("http:\n  admin_token: a1234\nhttp:\n  listen: 127.0.0.1:1\n", "http", (1, 3)),
    ("ameyo:\n  token: x\n  timezone: UTC\n  token: y\n", "token", (2, 4)),
    ("fastagi:\n  listen:\n    - 127.0.0.1:1\n  allowed_clients: [{a: 1, a: 2}]\n", "a", (4, 4)),
])
def test_a_key_twice_in_one_mapping_names_both_lines(tmp_path: Path, text: str, key: str, lines: tuple) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "t.yml", text), environ={})
    assert f"duplicate key {key!r} at line {lines[0]} and line {lines[1]}" in str(info.value)


def test_the_same_key_in_different_mappings_is_fine(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "t.yml", "http:\n  listen: 127.0.0.1:1\nfastagi:\n  listen: 127.0.0.1:2\n"),
                         environ={})
    assert config.http.listen.port == 1 and config.fastagi.listen[0].port == 2


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write(etc / "t.yml", "mqtt:\n  ca_file: certs/ca.pem\ntops:\n  ca_file: /abs/ca.pem\n")
    config = load_config(path, environ={})
    assert config.store.url.get_secret_value() == f"sqlite+aiosqlite:///{etc}/state/telephonyd.db"  # the default too
    assert config.mqtt.ca_file == f"{etc}/certs/ca.pem"
    assert config.tops.ca_file == "/abs/ca.pem"
    env = {"TELEPHONYD_STORE_URL": "sqlite+aiosqlite:///db/x.db?timeout=5"}
    assert load_config(path, environ=env).store.url.get_secret_value() == f"sqlite+aiosqlite:///{etc}/db/x.db?timeout=5"


@pytest.mark.parametrize("url", [
    "sqlite+aiosqlite:////var/lib/telephonyd/telephonyd.db",
    "sqlite+aiosqlite:///:memory:",
    "mysql+aiomysql://u:p@127.0.0.1:3306/telephonyd",
])
def test_absolute_memory_and_server_urls_are_left_alone(url: str) -> None:
    assert anchor_paths({"store": {"url": url}}, Path("/etc/telephonyd"))["store"]["url"] == url


def test_without_a_file_paths_stay_relative_to_the_working_directory() -> None:
    assert load_config(None, environ={}).store.url.get_secret_value() == "sqlite+aiosqlite:///state/telephonyd.db"


@pytest.mark.parametrize(("raw", "shown"), [
    ("plain text\nsecond line", "plain text\nsecond line"),
    ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("tab\there\rcr", "tab\\there\\rcr"),
    ("c1\x9b31m del\x7f", "c1\\x9b31m del\\x7f"),
    ("rtl\u202eoverride \u2028sep", "rtl\\u202eoverride \\u2028sep"),
    ("日本語 ok", "日本語 ok"),
])
def test_printable_escapes_control_characters(raw: str, shown: str) -> None:
    assert printable(raw) == shown
