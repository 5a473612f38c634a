"""sd_notify spoken directly over the datagram socket systemd gives us (no compiled dependency).

Protocol (systemd's ``sd_notify(3)``): newline-separated ``KEY=VALUE`` assignments sent as one
datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). ``WATCHDOG_USEC``
(and ``WATCHDOG_PID``, when set, must be our pid) asks for ``WATCHDOG=1`` at least that often.
With ``NOTIFY_SOCKET`` unset every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Send READY/STATUS/WATCHDOG/STOPPING to systemd. Failures are logged once, never raised."""

    def __init__(self, environ: dict[str, str] | os._Environ[str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._sock: socket.socket | None = None
        self._warned = False
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        owned = not pid or pid == str(os.getpid())
        self.watchdog_interval_s: float | None = (
            int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 and owned and address else None
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> None:
        if self._address is None:
            return
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed", extra={"error": str(exc)})

    def ready(self, status: str = "ready") -> None:
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def reloading(self) -> None:
        self.send(RELOADING="1", STATUS="reloading configuration")

    def stopping(self) -> None:
        self.send(STOPPING="1", STATUS="stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
