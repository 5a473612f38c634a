"""The environment overlay: ``TELEPHONYD__SECTION__KEY`` read as YAML, the relay's names, precedence, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from telephonyd.config import ConfigError, env_overrides, load_config


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_generic_values_are_read_as_yaml_along_the_field_tree() -> None:
    env = {
        "TELEPHONYD__MQTT__QOS": "2",
        "TELEPHONYD__FASTAGI__LISTEN": "[127.0.0.1:1, '[::1]:3']",
        "TELEPHONYD__TOPS__TEST__API_KEY": "k" * 32,
        "TELEPHONYD__HTTP__ADMIN_TOKEN": "null",
        "TELEPHONYD__PRESENCE__CUSTOM_DEVICE_STATES": "{DND: dnd, AWAY: away}",
        "TELEPHONYD__ALLOW_READABLE_SECRETS": "yes",
    }
    assert env_overrides(env) == {
        "mqtt": {"qos": 2},
        "fastagi": {"listen": ["127.0.0.1:1", "[::1]:3"]},
        "tops": {"test": {"api_key": "k" * 32}},
        "http": {"admin_token": None},
        "presence": {"custom_device_states": {"DND": "dnd", "AWAY": "away"}},
        "allow_readable_secrets": True,
    }
    config = load_config(None, environ=env)
    assert config.mqtt.qos == 2
    assert [str(a) for a in config.fastagi.listen] == ["127.0.0.1:1", "[::1]:3"]


def test_generic_name_beats_relay_name_and_empty_relay_names_are_ignored() -> None:
    env = {"TEST_API_KEY": "from-relay-name", "TELEPHONYD__TOPS__TEST__API_KEY": "from-generic", "PROD_API_KEY": ""}
    assert env_overrides(env) == {"tops": {"test": {"api_key": "from-generic"}}}
    assert env_overrides({"ENABLE_REAL_SEND": "true"}) == {"tops": {"real_send": "true"}}  # relay names stay raw


def test_prefix_is_matched_in_capitals_only_and_the_rest_in_any_case() -> None:
    assert env_overrides({"telephonyd__node_id": "x", "TELEPHONYD__": "y"}) == {}
    assert env_overrides({"TELEPHONYD__Did_Optimizer__Enabled": "false"}) == {"did_optimizer": {"enabled": False}}


def test_environment_wins_over_file_and_conf_d(tmp_path: Path) -> None:
    main = write(tmp_path / "t.yml", "node_id: file\noutbox:\n  concurrency: 3\n")
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "10.yml", "node_id: confd\n")
    config = load_config(main, environ={"TELEPHONYD__NODE_ID": "env"})
    assert (config.node_id, config.outbox.concurrency) == ("env", 3)


@pytest.mark.parametrize(
    ("name", "value", "path", "message"),
    [
        ("TELEPHONYD__BOGUS", "1", "bogus", "unknown key"),
        ("TELEPHONYD__FASTAGI__LISTN", "127.0.0.1:1", "fastagi.listn", "unknown key"),
        ("TELEPHONYD__HTTP__LISTEN", "127.0.0.1:99999", "http.listen.port", ""),
        ("TELEPHONYD__FASTAGI__LISTEN", "[127.0.0.1:1", "fastagi.listen", "not valid YAML"),
    ],
)
def test_bad_environment_values_name_the_dotted_path(name: str, value: str, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={name: value})
    assert info.value.path == path
    assert info.value.exit_code == 78
    assert message in str(info.value)


def test_secret_from_the_environment_is_masked() -> None:
    config = load_config(None, environ={"TELEPHONYD__HTTP__ADMIN_TOKEN": "env-secret-123"})
    assert "env-secret-123" not in repr(config.masked())
    assert "env-secret-123" in config.secrets()
