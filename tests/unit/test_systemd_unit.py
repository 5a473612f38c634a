"""The shipped systemd unit passes `systemd-analyze verify` and rates OK or better for security."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "telephonyd.service"

def _need_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is not None:
        return
    if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":
        pytest.fail("systemd-analyze is not installed and TELEPHONYD_REQUIRE_SERVICES=1")
    pytest.skip("systemd-analyze is not installed")


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at this checkout's interpreter, so verify can stat it."""
    text = UNIT.read_text().replace(
        "/opt/telephonyd/venv/bin/telephonyd run", f"{sys.executable} -m telephonyd run"
    )
    path = tmp_path / "telephonyd.service"
    path.write_text(text)
    return path


def test_unit_has_the_required_settings() -> None:
    text = UNIT.read_text()
    for setting in (
        "Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78", "ExecReload=",
        "StateDirectory=telephonyd", "RuntimeDirectory=telephonyd", "ConfigurationDirectory=telephonyd",
        "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
        "RestrictAddressFamilies=", "RestrictNamespaces=yes", "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=\n", "UMask=0027", "User=telephonyd",
    ):
        assert setting in text, setting
    assert "Requires=" not in text  # ordered after MariaDB/Asterisk, never requiring them


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    _need_systemd_analyze()
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local_unit(tmp_path))], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "telephonyd.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_systemd_analyze_security_rates_ok_or_better(tmp_path: Path) -> None:
    _need_systemd_analyze()
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(local_unit(tmp_path))],
        capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert match.group(2) in ("SAFE", "OK"), match.group(0)
    assert float(match.group(1)) < 5.0


def test_tls_directory_is_read_only_and_reloadable() -> None:
    text = UNIT.read_text()
    assert "ReadOnlyPaths=-/etc/telephonyd/tls" in text
    # keys stay reloadable on SIGHUP: credentials would be copied once, at start
    assert not any(line.startswith("LoadCredential=") for line in text.splitlines())
