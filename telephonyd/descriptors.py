"""File descriptors: how many each listener may hold, and accept errors logged once per interval.

Every accepted connection costs one descriptor of the process's ``RLIMIT_NOFILE``. When they run
out, ``accept()`` fails with EMFILE for every listener alike, so an HTTP flood would keep Asterisk's
FastAGI connections waiting in the listen queue and outcomes would go unrecorded. `plan_descriptors`
splits what is left after start-up so that this cannot happen: HTTP connections are capped below
the limit minus ``fastagi.reserved_fds``, and FastAGI sessions are capped at what remains, so the
two listeners together never reach the limit. asyncio accepts up to a listener's ``backlog``
connections per wake-up, and a connection refused or evicted holds its descriptor for a few loop
iterations more: both listeners therefore accept `ACCEPT_BATCH` at a time (`listen_queue` gives the
kernel's queue its own, longer length) and each listener's share includes `ACCEPT_IN_FLIGHT`.

`AcceptErrorReporter` is the event loop's exception handler for asyncio's "socket.accept() out of
system resource" (EMFILE, ENFILE, ENOBUFS, ENOMEM; asyncio retries the accept after a second): it
counts each one (``telephonyd_accept_errors_total{errno}``) and logs at most one line per
interval with the count; everything else goes to the loop's default handler.
"""

from __future__ import annotations

import asyncio
import errno as errno_names
import logging
import os
import resource
import socket
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from .logs import LogThrottle

log = logging.getLogger(__name__)

#: Descriptors kept out of both listeners' budgets besides the upstream connection pool: the store
#: (SQLite file, WAL and shm, or MariaDB connections), AMI, MQTT, the journal, DNS lookups.
BASE_SPARE_FDS = 48
#: Fewest connections a listener is given, however low the limit (a warning says it is too low).
MIN_CONNECTIONS = 8
#: Connections a listener accepts per event loop wake-up (asyncio's ``backlog`` argument).
ACCEPT_BATCH = 16
#: Descriptors a listener may hold beyond its cap: what it accepts over the ~5 loop iterations from
#: ``accept()`` until a refused or evicted connection is closed.
ACCEPT_IN_FLIGHT = 5 * ACCEPT_BATCH
#: The message asyncio's selector loop reports an accept failure with (Lib/asyncio/selector_events.py).
ACCEPT_ERROR_MESSAGE = "socket.accept() out of system resource"


@dataclass(frozen=True)
class DescriptorBudget:
    """Connection caps derived from ``RLIMIT_NOFILE`` (all counts are descriptors).

    ``limit``: the soft limit; ``in_use``: open at start; ``spare``: kept for the store and
    upstream connections; ``http_connections`` / ``fastagi_sessions``: the effective caps;
    ``lowered``: config keys whose value had to be lowered to fit (for the start-up warning).
    """

    limit: int
    in_use: int
    spare: int
    http_connections: int
    fastagi_sessions: int
    lowered: tuple[str, ...] = ()


def plan_descriptors(*, limit: int, in_use: int, spare: int, http_max: int, fastagi_max: int,
                     fastagi_reserved: int, in_flight: int = ACCEPT_IN_FLIGHT) -> DescriptorBudget:
    """Split ``limit - in_use - spare`` between the listeners (pure).

    HTTP gets at most ``free - fastagi_reserved - in_flight`` connections; FastAGI gets what HTTP
    cannot take less its own ``in_flight`` (so at least ``fastagi_reserved - in_flight`` when the
    limit allows it), each capped by its configured maximum.
    """
    free = max(0, limit - in_use - spare)
    http = max(MIN_CONNECTIONS, min(http_max, free - fastagi_reserved - in_flight))
    fastagi = max(MIN_CONNECTIONS, min(fastagi_max, free - http - 2 * in_flight))
    lowered = [key for key, got, wanted in (
        ("http.max_connections", http, http_max), ("fastagi.max_sessions", fastagi, fastagi_max)) if got < wanted]
    return DescriptorBudget(limit, in_use, spare, http, fastagi, tuple(lowered))


def listen_queue(sockets: Any, backlog: int) -> None:
    """Set the kernel listen queue of a server's ``sockets`` to ``backlog`` (asyncio set it to the
    accept batch it was given). Queued connections hold no descriptor of this process."""
    for transport_socket in sockets:
        sock = socket.fromfd(transport_socket.fileno(), transport_socket.family, transport_socket.type)
        try:
            sock.listen(backlog)
        finally:
            sock.close()


def raise_nofile_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (capped at 1,048,576); returns the soft
    limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.info("could not raise the open-file limit", extra={"soft": soft, "hard": hard, "error": str(exc)})
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_descriptors() -> int | None:
    """Descriptors this process has open now (Linux ``/proc/self/fd``; None where unavailable, as
    when none is left to list them)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def budget_for(config: Any, upstream_connections: int) -> DescriptorBudget:
    """`plan_descriptors` for a `Config`, after raising the soft limit; logs the result once and
    warns when a configured cap had to be lowered."""
    limit = raise_nofile_limit()
    budget = plan_descriptors(
        limit=limit, in_use=open_descriptors() or 0, spare=BASE_SPARE_FDS + upstream_connections,
        http_max=config.http.max_connections, fastagi_max=config.fastagi.max_sessions,
        fastagi_reserved=config.fastagi.reserved_fds,
    )
    extra = {"nofile_limit": budget.limit, "fds_in_use": budget.in_use,
             "http_max_connections": budget.http_connections, "fastagi_max_sessions": budget.fastagi_sessions}
    if budget.lowered:
        log.warning("open-file limit too low for the configured connection caps; caps lowered "
                    "(raise LimitNOFILE)", extra={**extra, "lowered": list(budget.lowered)})
    else:
        log.info("descriptor budget", extra=extra)
    return budget


class AcceptErrorReporter:
    """Event loop exception handler: accept errors counted and logged once per ``interval_s``.

    ``install(loop)`` sets it; ``collectors()`` gives its prometheus instruments for ``/metrics``.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.errors = Counter("telephonyd_accept_errors", "Failed accept() calls on a listener "
                              "(descriptors or memory exhausted), by errno", ["errno"], registry=None)
        self._throttle = LogThrottle(log, interval_s)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self)

    def collectors(self) -> list[Counter]:
        return [self.errors]

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") != ACCEPT_ERROR_MESSAGE or not isinstance(exc, OSError):
            loop.default_exception_handler(context)
            return
        name = errno_names.errorcode.get(exc.errno or 0, str(exc.errno))
        self.errors.labels(name).inc()
        self._throttle.log(logging.ERROR, "accept_error", "listener cannot accept connections: out of descriptors "
                           "or memory (retrying every second)", {"errno": name, "fds_in_use": open_descriptors()})
