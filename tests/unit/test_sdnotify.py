"""sd_notify over a real datagram socket bound as NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from telephonyd.sdnotify import Notifier


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval_s == 1.0
        notifier.ready("listening")
        notifier.watchdog()
        notifier.stopping()
        got = [server.recv(4096).decode() for _ in range(3)]
    finally:
        server.close()
    assert got[0].split("\n")[:2] == ["READY=1", "STATUS=listening"]
    assert got[1] == "WATCHDOG=1"
    assert got[2].startswith("STOPPING=1")


def test_abstract_namespace_socket() -> None:
    name = f"telephonyd-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(2)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert server.recv(100) == b"STATUS=hello"
    finally:
        server.close()


def test_nothing_without_notify_socket_and_foreign_watchdog_pid() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s is None
    notifier.ready()  # no socket, no error
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None
