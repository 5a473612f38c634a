"""CLI: ``telephonyd agents [--json]`` and ``telephonyd refresh [--json]`` (via the daemon's HTTP API)."""

from __future__ import annotations

from typing import Any

import click


def format_agents(extensions: list[dict[str, Any]]) -> str:
    """A table: endpoint, state, online, since, contacts."""
    header = ("ENDPOINT", "STATE", "ONLINE", "SINCE", "CONTACTS")
    rows = [
        (
            str(ext.get("endpoint", "")),
            str(ext.get("state", "")),
            "yes" if ext.get("online") else "no",
            str(ext.get("since", "")),
            str(len(ext.get("contacts") or [])),
        )
        for ext in extensions
    ]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    if not rows:
        lines.append("(no agents known)")
    return "\n".join(lines)


def format_refresh(result: dict[str, Any]) -> str:
    presence = result.get("presence") or {}
    contacts = result.get("contacts") or {}
    summary = (f"presence: {presence.get('agents', 0)} agents from {presence.get('source') or 'no listing'}, "
               f"{len(presence.get('changed') or [])} changed, {len(presence.get('retired') or [])} retired")
    lines = [summary]
    if contacts:
        lines.append("contacts: " + ", ".join(f"{k}={v}" for k, v in sorted(contacts.items())
                                              if not isinstance(v, (dict, list))))
    return "\n".join(lines)


#: What ``agents`` / ``refresh`` say when the daemon runs without its AMI side.
AMI_OFF = ("AMI is off (ami.enabled: false in {path}), so the daemon follows no agents. To enable it, set "
           "ami.enabled: true with ami.host, ami.port, ami.username and ami.secret (a manager.conf user with "
           "read: system,call,agent and write: system,reporting), then restart the daemon.")


def _call(obj: Any, method: str, path: str) -> dict[str, Any]:
    from .helpers import run_async

    status, data = run_async(obj.api(method, path))
    if status == 404 and not obj.config.ami.enabled:
        raise click.ClickException(AMI_OFF.format(path=obj.resolved_path or "the built-in defaults"))
    if status != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else data
        raise click.ClickException(f"{method} {path} answered {status}: {error}")
    return data


def register(cli: click.Group) -> None:
    """Add ``agents`` and ``refresh`` to the ``telephonyd`` command group."""

    @cli.command("agents")
    @click.option("--json", "as_json", is_flag=True, help="Print the agents as JSON.")
    @click.pass_obj
    def agents(obj: Any, as_json: bool) -> None:
        """List agents: endpoint, state, online, since (GET /api/ami/extensions)."""
        from .helpers import echo, echo_json

        data = _call(obj, "GET", "/api/ami/extensions")
        extensions = data.get("extensions") or []
        if as_json:
            echo_json(extensions)
        else:
            echo(format_agents(extensions))

    @cli.command("refresh")
    @click.option("--json", "as_json", is_flag=True, help="Print the resync result as JSON.")
    @click.pass_obj
    def refresh(obj: Any, as_json: bool) -> None:
        """Resync contacts and agent presence from Asterisk now (POST /api/ami/refresh)."""
        from .helpers import echo, echo_json

        data = _call(obj, "POST", "/api/ami/refresh")
        result = {k: v for k, v in data.items() if k != "success"}
        if as_json:
            echo_json(result)
        else:
            echo(format_refresh(result))
