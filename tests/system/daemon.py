"""Run the real daemon as a subprocess: config in a temp dir, sd_notify socket, signals, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import free_port  # noqa: F401 - re-exported for the system tests


class Daemon:
    """One ``telephonyd run`` process. ``notifications`` collects what it sent to NOTIFY_SOCKET."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                 nofile: int | None = None) -> None:
        """``nofile``: run the daemon with this RLIMIT_NOFILE (soft and hard), as a small server would."""
        self.workdir = workdir
        self.nofile = nofile
        workdir.mkdir(parents=True, exist_ok=True)
        self.agi_port = free_port()
        self.http_port = free_port()
        base: dict[str, Any] = {
            "node_id": "sys1",
            "store": {"url": f"sqlite+aiosqlite:///{workdir}/telephonyd.db"},
            "fastagi": {"listen": f"127.0.0.1:{self.agi_port}"},
            "http": {"listen": f"127.0.0.1:{self.http_port}", "admin_token": "sys-admin-token"},
            "logging": {"format": "json", "level": "INFO"},
        }
        self.config = _merge(base, config)
        self.config_path = workdir / "telephonyd.yml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.config_path.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEPHONYD", "NOTIFY_SOCKET", "WATCHDOG"))}
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.notify_path = str(workdir / "notify.sock")
        self._notify: socket.socket | None = None
        self.notifications: list[str] = []
        self.log_path = workdir / "daemon.log"

    # -- process ---------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> None:
        if self._notify is None:
            if os.path.exists(self.notify_path):
                os.unlink(self.notify_path)
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(self.notify_path)
            self._notify.setblocking(False)
        env = dict(self.env, NOTIFY_SOCKET=self.notify_path)
        since = len(self.drain_notifications())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telephonyd", "run", "-c", str(self.config_path)],
            cwd=self.workdir, env=env, stdout=log, stderr=log, preexec_fn=self._limits if self.nofile else None,
        )
        log.close()
        if wait_ready:
            self.wait_for_notification("READY=1", timeout, since=since)

    def _limits(self) -> None:
        import resource

        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def drain_notifications(self) -> list[str]:
        while self._notify is not None:
            try:
                self.notifications.append(self._notify.recv(65536).decode())
            except BlockingIOError:
                break
        return self.notifications

    def wait_for_notification(self, needle: str, timeout: float, since: int = 0) -> str:
        """Wait for a notification line ``needle`` among those received after index ``since``."""
        deadline = time.monotonic() + timeout
        seen = since
        while time.monotonic() < deadline:
            messages = self.drain_notifications()
            for message in messages[seen:]:
                if needle in message.split("\n"):
                    return message
            seen = len(messages)
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            time.sleep(0.02)
        raise AssertionError(f"no {needle} from the daemon within {timeout}s:\n{self.logs()[-4000:]}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.logs().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    # -- HTTP API --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def headers(self) -> dict[str, str]:
        token = self.config["http"].get("admin_token")
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str) -> tuple[int, Any]:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.get(self.base_url + path, headers=self.headers) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text)
                except ValueError:
                    return resp.status, text

    async def wait_status(self, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll /status until ``predicate(status)`` is true; returns that status."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                code, last = await self.get("/status")
                if code == 200 and predicate(last):
                    return last
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"status condition not reached in {timeout}s; last status: {last}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
