"""``telephonyd agents`` and ``telephonyd refresh`` against a scripted daemon API."""

from __future__ import annotations

import json
from typing import Any

import click
from click.testing import CliRunner

from telephonyd.cli.presence import register

EXTENSIONS = [
    {"endpoint": "1010", "state": "available", "online": True, "since": "2026-11-21T04:54:15.000Z", "seq": 3,
     "contacts": [{"id": "1010;@28b54723d2a1a3b7d4c8eaf869a5a86e", "status": "Reachable"}]},
    {"endpoint": "1011", "state": "offline", "online": False, "since": "2026-11-21T04:50:00.000Z", "seq": 1,
     "contacts": []},
]


class ScriptedAPI:
    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str]] = []

    async def api(self, method: str, path: str, json_body: Any = None) -> tuple[int, Any]:
        self.calls.append((method, path))
        return self.answers[(method, path)]


def invoke(obj: ScriptedAPI, *args: str):
    group = click.Group("telephonyd")
    register(group)
    return CliRunner().invoke(group, list(args), obj=obj)


def test_agents_table_and_json() -> None:
    obj = ScriptedAPI({("GET", "/api/ami/extensions"): (200, {"success": True, "extensions": EXTENSIONS})})
    table = invoke(obj, "agents")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["ENDPOINT", "STATE", "ONLINE", "SINCE", "CONTACTS"]
    assert lines[1].split() == ["1010", "available", "yes", "2026-11-21T04:54:15.000Z", "1"]
    assert lines[2].split() == ["1011", "offline", "no", "2026-11-21T04:50:00.000Z", "0"]
    as_json = invoke(obj, "agents", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output) == EXTENSIONS
    assert obj.calls == [("GET", "/api/ami/extensions")] * 2


def test_refresh_reports_the_resync_and_fails_cleanly_on_503() -> None:
    result = {"contacts": {"added": 1, "removed": 0, "total": 2},
              "presence": {"source": "DeviceStateList", "agents": 2, "changed": ["1010"], "retired": ["1012"]}}
    obj = ScriptedAPI({("POST", "/api/ami/refresh"): (200, {"success": True, **result})})
    out = invoke(obj, "refresh")
    assert out.exit_code == 0, out.output
    assert "2 agents from DeviceStateList, 1 changed, 1 retired" in out.output
    assert "added=1" in out.output and "total=2" in out.output
    assert json.loads(invoke(obj, "refresh", "--json").output) == result

    down = ScriptedAPI({("POST", "/api/ami/refresh"): (503, {"success": False, "error": "AMI is not connected"})})
    failed = invoke(down, "refresh")
    assert failed.exit_code == 1 and "503: AMI is not connected" in failed.output


class AMIOffAPI(ScriptedAPI):
    """The daemon as it runs on the default config: no AMI side, so no /api/ami/* routes."""

    def __init__(self) -> None:
        super().__init__({("GET", "/api/ami/extensions"): (404, {"success": False, "error": "not found"}),
                          ("POST", "/api/ami/refresh"): (404, {"success": False, "error": "not found"})})
        from telephonyd.config import Config

        self.config = Config()
        self.resolved_path = "/etc/telephonyd/telephonyd.yml"


def test_agents_and_refresh_with_ami_off_say_so_and_how_to_enable_it() -> None:
    for command in ("agents", "refresh"):
        result = invoke(AMIOffAPI(), command)
        assert result.exit_code == 1
        assert "AMI is off (ami.enabled: false in /etc/telephonyd/telephonyd.yml)" in result.output
        assert "set ami.enabled: true" in result.output
        assert "404" not in result.output
