"""Per-connection protection of the HTTP listener: connection caps, a request-head timeout, and
parser refusals that quote nothing of the request.

`ConnectionLimits` holds the state and the prometheus instruments; `_RequestHandler` (aiohttp's
per-connection protocol, built by `protocol_factory`) applies them:

- A connection beyond ``max_connections`` open at once, or beyond ``max_connections_per_client``
  from one address, is reset as soon as it is accepted, before aiohttp allocates anything for it
  (``telephonyd_http_connections_refused_total{reason="overload"|"client_cap"}``).
- A connection must deliver a complete request head within ``header_timeout_s`` of connecting or
  of its previous request, else it is closed (``telephonyd_http_timeouts_total{phase="header"}``):
  a slowloris that sends half a request line and stalls costs a descriptor for that long only.
  Requests being handled (and WebSockets) are not affected; their bodies have their own timeout.
- aiohttp answers a request its parser refuses with the parser's message, which holds the start of
  the request line (``/index.php?token=...``), and logs it with a traceback. Here the answer is the
  bare status line text and the log one warning naming the error class.

Every refusal and timeout is counted; the log shows at most one line per kind per interval, with
how many were held back (`LogThrottle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter, Gauge

from ..logs import LogThrottle
from .proxies import is_trusted, parse_ip

log = logging.getLogger("telephonyd.web.server")


class ConnectionLimits:
    """Open connections by client address, the caps, and the listener's refusal counters.

    ``collectors()`` gives the prometheus instruments (``telephonyd_http_connections_open``,
    ``telephonyd_http_connections_refused_total{reason}``, ``telephonyd_http_timeouts_total{phase}``,
    ``telephonyd_http_auth_refused_total{area}``).
    """

    def __init__(self, *, max_connections: int, max_per_client: int, header_timeout_s: float,
                 log_interval_s: float = 10.0) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.by_client: dict[str, int] = {}
        #: ``http.trusted_proxies``: their connections are not held to ``max_per_client``.
        self.trusted: list[Any] = []
        self.throttle = LogThrottle(log, log_interval_s)
        self.refused = Counter("telephonyd_http_connections_refused", "HTTP connections reset at accept "
                               "(overload: max_connections; client_cap: max_connections_per_client)",
                               ["reason"], registry=None)
        self.timeouts = Counter("telephonyd_http_timeouts", "HTTP connections or requests cut off "
                                "(header: no complete request head in time; body: body too slow)",
                                ["phase"], registry=None)
        self.auth_refused = Counter("telephonyd_http_auth_refused", "Admin requests refused for a missing or "
                                    "wrong token", ["area"], registry=None)
        self.open_gauge = Gauge("telephonyd_http_connections_open", "HTTP connections open", registry=None)
        self.open_gauge.set_function(lambda: self.open)

    def collectors(self) -> list[Any]:
        return [self.open_gauge, self.refused, self.timeouts, self.auth_refused]

    def admit(self, host: str) -> str | None:
        """Take a slot for a connection from ``host``; the refusal reason when there is none."""
        if self.open >= self.max_connections:
            return "overload"
        held = self.by_client.get(host, 0)
        if held >= self.max_per_client and not (self.trusted and is_trusted(parse_ip(host), self.trusted)):
            return "client_cap"
        self.by_client[host] = held + 1
        self.open += 1
        return None

    def release(self, host: str) -> None:
        held = self.by_client.get(host, 0) - 1
        if held > 0:
            self.by_client[host] = held
        else:
            self.by_client.pop(host, None)
        self.open = max(0, self.open - 1)

    def note_refused(self, reason: str, host: str) -> None:
        self.refused.labels(reason).inc()
        message = ("HTTP connection refused: max_connections reached" if reason == "overload"
                   else "HTTP connection refused: max_connections_per_client reached")
        self.throttle.log(logging.WARNING, f"http_refused_{reason}", message,
                          {"peer": host, "open": self.open, "max_connections": self.max_connections,
                           "max_connections_per_client": self.max_per_client})

    def note_timeout(self, phase: str, host: str | None, timeout_s: float) -> None:
        self.timeouts.labels(phase).inc()
        message = ("HTTP connection closed: no complete request head in time" if phase == "header"
                   else "HTTP request refused: body not received in time")
        self.throttle.log(logging.INFO, f"http_{phase}_timeout", message, {"peer": host, "timeout_s": timeout_s})

    def note_auth_refused(self, area: str, path: str, peer: str | None) -> None:
        self.auth_refused.labels(area).inc()
        self.throttle.log(logging.WARNING, f"http_auth_{area}", "admin request refused",
                          {"path": path[:200], "peer": peer})


class _RequestHandler(RequestHandler):
    """aiohttp's per-connection protocol with the connection caps, the request-head timeout and
    parser refusals that quote nothing (see the module docstring).

    Built by `protocol_factory` exactly as ``web.Server.__call__`` builds aiohttp's own (the server
    as manager, the handler keyword arguments), plus ``limits``. Reads none of aiohttp's private
    state and overrides only public methods: ``connection_made``/``connection_lost`` (asyncio's
    protocol: the caps, the head timer), ``log_access`` (a response finished: counted even with the
    access log off), ``handle_error`` (the answer to a parser refusal) and ``log_exception`` (its
    log line). Request heads are counted by the server's ``request_factory`` (`protocol_factory`).
    These methods are not in aiohttp's documentation: their signatures and when aiohttp calls them
    were checked against aiohttp 3.9.0 and 3.14.5 (the bounds of ``aiohttp>=3.9,<4`` in
    ``setup.cfg``), and ``tests/component/test_http_aiohttp_seam.py`` fails if a release moves them.
    """

    _limits_host: str | None = None
    _head_timer: asyncio.TimerHandle | None = None
    #: Request heads taken (parsed ones and parser refusals alike), and answers finished.
    _heads = 0
    _answered = 0
    _head_seen = 0

    def __init__(self, manager: web.Server, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.limits = limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self.limits.admit(host)
        if refusal is not None:
            transport.abort()  # a reset at once: nothing parsed, nothing answered
            self.limits.note_refused(refusal, host)
            return
        self._limits_host = host
        super().connection_made(transport)
        self._head_seen = self._heads
        self._head_timer = asyncio.get_running_loop().call_later(self.limits.header_timeout_s, self._check_head)

    def connection_lost(self, exc: BaseException | None) -> None:
        host = self._limits_host
        if host is None:
            return  # refused at accept: aiohttp never saw this connection
        self._limits_host = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.limits.release(host)
        super().connection_lost(exc)

    def _check_head(self) -> None:
        """Close a connection that completed no request head since the last check and is not
        handling one; otherwise check again one timeout later."""
        self._head_timer = None
        if self._limits_host is None or self.transport is None:
            return
        heads = self._heads
        if heads == self._head_seen and self._answered == heads:  # no new head, none being handled
            self.limits.note_timeout("header", self._limits_host, self.limits.header_timeout_s)
            self.force_close()
            return
        self._head_seen = heads
        self._head_timer = asyncio.get_running_loop().call_later(self.limits.header_timeout_s, self._check_head)

    def head_taken(self) -> None:
        """A request head (or a parser refusal) is about to be handled (`protocol_factory`)."""
        self._heads += 1

    def log_access(self, request: Any, response: Any, time: float | None) -> None:
        self._answered += 1
        super().log_access(request, response, time)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status < 500:
            try:
                message = f"{status} {HTTPStatus(status).phrase}"
            except ValueError:
                message = str(status)
        return super().handle_error(request, status, exc, message)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            peer = args[1] if len(args) > 1 else None
            self.limits.throttle.log(
                logging.WARNING, "http_parser_refused", "HTTP request refused by the parser",
                {"status": exc.code, "error": type(exc).__name__, "peer": peer})
            return
        super().log_exception(*args, **kw)


def protocol_factory(server: web.Server, limits: ConnectionLimits, **handler_kwargs: Any) -> Callable[[], RequestHandler]:
    """The protocol factory to give ``loop.create_server`` for ``server`` (``AppRunner.server``
    after ``setup()``): `_RequestHandler` under ``limits``, with ``handler_kwargs``
    (``max_line_size``, ``lingering_time``, ... : aiohttp's ``RequestHandler`` keyword arguments).

    This replaces ``web.SockSite``, whose only work is the same ``create_server`` call with the
    runner's ``Server`` itself as the factory; the caller closes the ``asyncio.Server`` it gets
    before ``runner.cleanup()``, as ``SockSite.stop`` would. ``server.request_factory`` (public:
    aiohttp calls it once per request head, the handler that took it as ``protocol``) is wrapped
    once so each `_RequestHandler` counts its heads for the head timeout.
    """
    build_request = server.request_factory

    def counting_request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
        if isinstance(protocol, _RequestHandler):
            protocol.head_taken()
        return build_request(message, payload, protocol, writer, task)

    server.request_factory = counting_request_factory

    def make() -> RequestHandler:
        return _RequestHandler(server, limits, loop=asyncio.get_running_loop(), **handler_kwargs)

    return make
