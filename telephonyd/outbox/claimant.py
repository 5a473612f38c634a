"""Who holds a claim: a per-process claim token, and whether that process is provably gone.

Every outbox row an instance claims carries its ``node_id`` (``claimed_by``) and this process's
token (``claim_token``): ``<machine>|<boot id>|<pid>|<process start>|<random>``. ``<machine>`` is
``/etc/machine-id`` (the host name where there is none), ``<boot id>`` the kernel's
``/proc/sys/kernel/random/boot_id``, ``<process start>`` the process's start time in clock ticks
since boot (``/proc/<pid>/stat`` field 22), so a reused pid is not mistaken for the old process.

A restarted instance takes back at once the in-flight rows that an earlier process with its own
``node_id`` left behind, but only when that process is provably gone (`gone`): same machine and
either another boot, or no process with that pid and start time. A twin with the same ``node_id``
that is alive (on this machine, or on any other: nothing can be proved about another machine's
processes) is never taken from; its rows come back only when its lease runs out.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

#: The token's length bound (``outbox.claim_token`` is VARCHAR(128)).
MAX_TOKEN_CHARS = 128


@dataclass(frozen=True, slots=True)
class Claimant:
    """The parts of a claim token."""

    machine: str
    boot_id: str
    pid: int
    started: int

    def describe(self) -> str:
        return f"pid {self.pid}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def machine_id() -> str:
    """``/etc/machine-id`` (or the host name), without ``|``, at most 48 characters."""
    ident = _read("/etc/machine-id") or socket.gethostname() or "unknown"
    return ident.replace("|", "_")[:48]


def boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id").replace("|", "_")[:40] or "unknown"


def process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot; None when there is no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def current() -> Claimant:
    pid = os.getpid()
    return Claimant(machine_id(), boot_id(), pid, process_start(pid) or 0)


def new_token(claimant: Claimant | None = None) -> str:
    """A fresh claim token for this process (a new random part on every call)."""
    me = claimant or current()
    return f"{me.machine}|{me.boot_id}|{me.pid}|{me.started}|{secrets.token_hex(4)}"[:MAX_TOKEN_CHARS]


def parse(token: str | None) -> Claimant | None:
    """The claimant of ``token``; None when it is not one of these tokens (an older version's NULL)."""
    if not token:
        return None
    parts = token.split("|")
    if len(parts) != 5:
        return None
    try:
        return Claimant(parts[0], parts[1], int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def gone(token: str | None, me: Claimant | None = None) -> bool:
    """True only when the process that made ``token`` provably no longer runs: it ran on this
    machine, and the machine rebooted since, or no process with its pid and start time exists."""
    them = parse(token)
    me = me or current()
    if them is None or them.machine != me.machine:
        return False
    if them.boot_id != me.boot_id:
        return True
    if them.pid == me.pid and them.started == me.started:
        return False
    return process_start(them.pid) != them.started
