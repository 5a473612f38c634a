"""Configuration mistakes an operator makes, against the daemon and the CLI as processes: each is a
configuration error (exit 78, which systemd does not restart on) that names what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cli_run import telephonyd
from .daemon import Daemon

pytestmark = pytest.mark.system

EX_CONFIG = 78


def test_http_section_written_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d", {})
    try:
        text = daemon.config_path.read_text()
        # The case: a second http: section would silently drop the first and its admin_token.
        daemon.config_path.write_text(text + "http:\n  listen: 127.0.0.1:1\n")
        lines = daemon.config_path.read_text().splitlines()
        first = lines.index("http:") + 1
        second = len(lines) - 1
        daemon.start(wait_ready=False)
        assert daemon.proc is not None
        assert daemon.proc.wait(30) == EX_CONFIG
        assert f"duplicate key 'http' at line {first} and line {second}" in daemon.logs()
        checked = telephonyd("check-config", "-c", str(daemon.config_path))
        assert checked.returncode == EX_CONFIG
        assert f"line {first} and line {second}" in checked.stderr
        assert str(daemon.config_path) in checked.stderr
    finally:
        daemon.close()


def test_duplicate_key_nested_or_in_conf_d_is_refused(tmp_path: Path) -> None:
    main = tmp_path / "telephonyd.yml"
    main.write_text("node_id: n1\nhttp:\n  listen: 127.0.0.1:8090\n")
    main.chmod(0o600)
    assert telephonyd("check-config", "-c", str(main)).returncode == 0
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    extra = conf_d / "10-token.yml"
    extra.write_text("http:\n  admin_token: first-token\n  max_body_bytes: 2048\n  admin_token: second\n")
    extra.chmod(0o600)
    result = telephonyd("check-config", "-c", str(main))
    assert result.returncode == EX_CONFIG, result.stdout
    assert f"{extra}: duplicate key 'admin_token' at line 2 and line 4" in result.stderr
    # A merge key (<<) overriding a merged key is not a duplicate.
    extra.write_text("fastagi:\n  <<: {max_sessions: 5}\n  max_sessions: 6\n")
    result = telephonyd("check-config", "-c", str(main))
    assert result.returncode == 0, result.stderr
    assert "max_sessions: 6" in result.stdout


@pytest.mark.parametrize("how", ["-c", "TELEPHONYD_CONFIG"])
def test_unreadable_config_exits_78_with_path_and_reason(tmp_path: Path, how: str) -> None:
    path = tmp_path / "telephonyd.yml"
    path.write_text("node_id: n1\n")
    path.chmod(0o000)
    args, env = (["run", "-c", str(path)], None) if how == "-c" else (["run"], {"TELEPHONYD_CONFIG": str(path)})
    result = telephonyd(*args, env=env, without_dac_override=True)
    assert result.returncode == EX_CONFIG, result.stderr
    assert f"cannot read {path}: Permission denied" in result.stderr


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_config_path_that_is_no_file_exits_78(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "conf"
    if kind == "directory":
        path.mkdir()
    result = telephonyd("run", "-c", str(path))
    assert result.returncode == EX_CONFIG, result.stderr
    reason = "a directory" if kind == "directory" else "does not exist"
    assert f"config file {path}: {reason}" in result.stderr


def test_unreadable_conf_d_is_not_skipped_silently(tmp_path: Path) -> None:
    main = tmp_path / "telephonyd.yml"
    main.write_text("node_id: n1\n")
    main.chmod(0o600)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-token.yml").write_text("http:\n  admin_token: from-conf-d\n")
    conf_d.chmod(0o000)
    try:
        result = telephonyd("check-config", "-c", str(main), without_dac_override=True)
    finally:
        conf_d.chmod(0o700)
    assert result.returncode == EX_CONFIG, result.stdout
    assert f"cannot read {conf_d}: Permission denied" in result.stderr
