"""`HTTPServer`: one aiohttp listener for health, status, admin API, WebSocket and dialer callbacks.

Built-in routes:
- ``GET /healthz``: 200 ``{"ok": true}`` while the process runs (no auth, for load balancers).
- ``GET /readyz``: 200 when every listener is bound and the store answers, else 503 (admin auth,
  or none with ``http.public_readyz``: the body is only ``{"ready": bool}``).
- ``GET /status``: JSON status of every component (admin auth).

Edges add routes with `add_routes` before `start`. ``auth='admin'`` routes need
``Authorization: Bearer <http.admin_token>`` when a token is configured (compared in constant time;
401 otherwise), or a session the ``session_auth`` hook accepts (the web console's cookie,
`telephonyd.console.sessions`); ``auth='none'`` routes do their own access control (the Ameyo callbacks).

Request sizes are bounded before any handler runs: the request line (method, path and query string)
to `MAX_LINE_BYTES`, each header to `MAX_FIELD_BYTES`, the header count to `MAX_HEADERS`, the body to
``http.max_body_bytes``. A request the HTTP parser refuses (line too long, bad characters, not HTTP)
is answered ``400 Bad Request`` and the connection closed; neither that answer nor the single warning
logged for it quotes the request, whose query may hold a token (aiohttp itself would echo the start
of the request line and log a traceback; see `connections`).

Slow and greedy clients (see `connections.ConnectionLimits`): a connection must send a complete
request head within ``http.header_timeout_s`` (else it is closed) and a request body within
``http.body_timeout_s`` (else 408); connections beyond ``max_connections`` (which the app lowers to
leave FastAGI its reserved descriptors) or ``max_connections_per_client`` are reset at accept.
Refusals and timeouts are counted (prometheus instruments, `collectors`) and logged at most once
per interval per kind with the number held back; so are requests with a missing or wrong admin token.
Every answered request is counted by route, method and status (`request_counts`, for metrics).

HTTPS (``http.tls``, `tls`): the listener speaks TLS only; `reload_tls` re-reads the certificate
(SIGHUP). With ``http.tls.client_ca_file`` admin routes also need a verified client certificate
(403 without one). Behind reverse proxies (``http.trusted_proxies``), ``request.remote`` is the
client address from the proxy header (`proxies.client_address`) for every handler and log; a
trusted proxy's connections are exempt from ``max_connections_per_client`` (its clients share it).
``http.public_listeners`` are further sockets of the same server (same limits), each with its own
TLS, on which every admin route answers 404: only the callbacks and ``/healthz`` face the dialer.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from aiohttp import web

from ..config import HTTPConfig
from ..errors import ConfigError
from ..descriptors import ACCEPT_BATCH, listen_queue
from . import proxies, tls
from .metrics import HTTPRequestsSection
from .binding import bind_tcp
from .connections import ConnectionLimits, protocol_factory

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Longest request line (``GET /path?query HTTP/1.1``), bytes. The callbacks' GET queries are a few
#: hundred bytes; aiohttp's default is the same, set here so it is a decision, not an accident.
MAX_LINE_BYTES = 8190
#: Longest header line, bytes, and most headers per request.
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 64
#: The kernel's listen queue (asyncio itself accepts `descriptors.ACCEPT_BATCH` at a time).
LISTEN_QUEUE = 1024
#: Seconds aiohttp keeps reading a body its handler left unread before it closes (its default, 10 s,
#: would let a slow body hold the connection past ``http.body_timeout_s``).
LINGER_S = 1.0
#: Methods counted by name; anything else counts as ``other``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Route label of requests that matched no route (404, 405).
UNMATCHED = "unmatched"


def json_error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"success": False, "error": error, **extra}, status=status)


class HTTPServer:
    """The HTTP listener. ``status`` returns the ``/status`` document; ``ready`` says if the daemon
    is ready to serve (listeners bound, store reachable)."""

    def __init__(
        self,
        config: HTTPConfig,
        *,
        status: Callable[[], Awaitable[dict[str, Any]]],
        ready: Callable[[], Awaitable[bool]],
        max_connections: int | None = None,
    ) -> None:
        """``max_connections`` overrides ``config.max_connections`` (the descriptor budget)."""
        self.config = config
        self._admin_token = config.admin_token.get_secret_value() if config.admin_token else None
        self._status = status
        self._ready = ready
        self.limits = ConnectionLimits(
            max_connections=max_connections or config.max_connections,
            max_per_client=config.max_connections_per_client, header_timeout_s=config.header_timeout_s,
        )
        self.limits.trusted = list(config.trusted_proxies)
        self._trusted = list(config.trusted_proxies)
        self._proxy_header: proxies.ProxyHeader = config.proxy_header
        self._ssl: ssl.SSLContext | None = None
        self._app = web.Application(client_max_size=config.max_body_bytes,
                                    middlewares=[self._client_address, self._count, self._read_body])
        self._runner: web.AppRunner | None = None
        #: The listening servers (`_serve`), closed before the runner's cleanup.
        self._listeners: list[asyncio.AbstractServer] = []
        self._protocol: Callable[[], asyncio.BaseProtocol] | None = None
        self._stopped = asyncio.Event()
        self._on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.bound_addresses: list[tuple[str, int]] = []
        #: Addresses of ``http.public_listeners`` (no admin routes), and their TLS contexts.
        self.public_addresses: list[tuple[str, int]] = []
        self._public_ssl: list[ssl.SSLContext | None] = []
        #: Answered requests: (route pattern, method, status) -> count.
        self.request_counts: dict[tuple[str, str, str], int] = {}
        #: Second way in for admin routes besides the Bearer token (the console's session cookie).
        self.session_auth: Callable[[web.Request], bool] | None = None
        self.add_routes([web.get("/healthz", self._healthz)], auth="none")
        self.add_routes([web.get("/readyz", self._readyz)], auth="none" if config.public_readyz else "admin")
        self.add_routes([web.get("/status", self._status_route)], auth="admin")

    # -- configuration ---------------------------------------------------------------------------

    @property
    def admin_token(self) -> str | None:
        """The admin token now in force (None: admin routes are open)."""
        return self._admin_token

    def set_admin_token(self, token: str | None) -> None:
        """Replace the admin token (SIGHUP reload)."""
        self._admin_token = token or None

    def set_trusted_proxies(self, networks: Iterable[Any], header: proxies.ProxyHeader | None = None) -> None:
        """Replace ``http.trusted_proxies`` and ``http.proxy_header`` (SIGHUP reload); open
        connections keep their cap slot."""
        self._trusted = list(networks)
        self._proxy_header = header or self._proxy_header
        self.limits.trusted = list(self._trusted)

    def reload_tls(self, config: Any, public: Iterable[Any] = ()) -> bool:
        """Re-read the certificate and key (``http.tls``, and each public listener's ``tls`` in
        ``public``) for new handshakes; False (logged, the old certificate kept) when one cannot be
        loaded or no listener has TLS."""
        pairs = [(self._ssl, config), *zip(self._public_ssl, [p.tls for p in public], strict=False)]
        done = [self._reload_one(context, cfg) for context, cfg in pairs if context is not None and cfg is not None]
        return bool(done) and all(done)

    def _reload_one(self, context: ssl.SSLContext, config: Any) -> bool:
        try:
            tls.reload_certificate(context, config)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS certificate not reloaded, the previous one stays",
                      extra={"cert_file": str(config.cert_file), "error": f"{type(exc).__name__}: {exc}"})
            return False
        log.info("TLS certificate reloaded", extra={"cert_file": str(config.cert_file)})
        return True

    def add_routes(self, routes: Iterable[web.RouteDef], *, auth: Literal["admin", "none"]) -> None:
        """Mount route definitions; ``auth`` decides whether the admin token guards them."""
        wrapped = []
        for route in routes:
            handler = self._guard(route.handler) if auth == "admin" else route.handler
            wrapped.append(web.RouteDef(route.method, route.path, handler, route.kwargs))
        self._app.add_routes(wrapped)

    def on_shutdown(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when the listener stops, before connections are closed (WebSockets)."""
        self._on_shutdown.append(callback)

    @web.middleware
    async def _client_address(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """``request.remote`` becomes the client address when the peer is a trusted proxy."""
        if self._trusted:
            header = self._proxy_header
            remote = proxies.client_address(request.remote, request.headers.getall(header, []),
                                            self._trusted, header)
            if remote != request.remote:
                request = request.clone(remote=remote)
        return await handler(request)

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._note_request(request, status)

    @web.middleware
    async def _read_body(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Read a request's body within ``body_timeout_s`` before its handler runs (aiohttp keeps
        it for the handler's own ``read()``/``json()``); 408 when it is too slow."""
        if request.body_exists and request.can_read_body and request.headers.get("Upgrade") is None:
            try:
                async with asyncio.timeout(self.config.body_timeout_s):
                    await request.read()
            except TimeoutError:
                self.limits.note_timeout("body", request.remote, self.config.body_timeout_s)
                answer = json_error(408, "request body not received in time")
                answer.force_close()
                return answer
        return await handler(request)

    def collectors(self) -> list[Any]:
        """The listener's metrics (connections, refusals, timeouts, requests), for ``/metrics``."""
        return [*self.limits.collectors(), HTTPRequestsSection(self.request_counts)]

    def _note_request(self, request: web.Request, status: int) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        key = (route, method, str(status))
        self.request_counts[key] = self.request_counts.get(key, 0) + 1

    def _guard(self, handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.public_addresses and self._on_public(request):
                return json_error(404, "not found")
            if not self.authorized(request):
                self.limits.note_auth_refused("admin", request.path, request.remote)
                return json_error(401, "admin token required", hint="Authorization: Bearer <http.admin_token>")
            if self.config.tls is not None and self.config.tls.client_ca_file is not None:
                transport = request.transport
                if transport is None or not transport.get_extra_info("peercert"):
                    self.limits.note_auth_refused("client_cert", request.path, request.remote)
                    return json_error(403, "client certificate required")
            return await handler(request)

        return guarded

    def _on_public(self, request: web.Request) -> bool:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        return isinstance(sockname, tuple) and tuple(sockname[:2]) in self.public_addresses

    def authorized(self, request: web.Request) -> bool:
        """Whether ``request`` may use the admin routes: with ``http.admin_token``, the Bearer token
        (or a console session); with none configured, only a client on this host (``request.remote``
        on loopback, after `http.trusted_proxies` named the real client): secure by default."""
        token = self._admin_token
        if token is None:
            return proxies.is_loopback(request.remote)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return self.session_auth is not None and self.session_auth(request)
        return hmac.compare_digest(presented.strip().encode(), token.encode())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener; raises OSError when the address is taken, ConfigError when the TLS
        files cannot be loaded."""
        if self.config.tls is not None:
            try:
                self._ssl = tls.server_context(self.config.tls)
            except OSError as exc:  # ssl.SSLError included
                raise ConfigError(f"http.tls: cannot load the certificate, key or client CAs "
                                  f"({type(exc).__name__}: {exc})", "http.tls") from None
        self._app.on_shutdown.append(self._run_shutdown_callbacks)
        self._runner = web.AppRunner(self._app, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        assert self._runner.server is not None
        self._protocol = protocol_factory(
            self._runner.server, self.limits, access_log=None,
            max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES, max_headers=MAX_HEADERS,
            lingering_time=LINGER_S,
        )
        sockets = await self._serve(self.config.listen.host, self.config.listen.port, self._ssl)
        self.bound_addresses = [s.getsockname()[:2] for s in sockets]
        for public in self.config.public_listeners:
            await self._start_public(public)
        log.info("HTTP listener bound", extra={"addresses": [f"{h}:{p}" for h, p in self.bound_addresses],
                                               "tls": self._ssl is not None})

    async def _start_public(self, public: Any) -> None:
        context = None
        if public.tls is not None:
            try:
                context = tls.server_context(public.tls)
            except OSError as exc:
                raise ConfigError(f"http.public_listeners: cannot load the certificate or key of {public.listen} "
                                  f"({type(exc).__name__}: {exc})", "http.public_listeners") from None
        sockets = await self._serve(public.listen.host, public.listen.port, context)
        self._public_ssl.append(context)
        self.public_addresses.extend(tuple(s.getsockname()[:2]) for s in sockets)
        log.info("HTTP public listener bound (callbacks and /healthz only)",
                 extra={"addresses": [f"{h}:{p}" for h, p in self.public_addresses[-len(sockets):]],
                        "tls": context is not None})

    async def _serve(self, host: str, port: int, context: ssl.SSLContext | None) -> list[socket.socket]:
        """Bind ``host``:``port`` and serve it on the runner; returns the listening sockets."""
        assert self._protocol is not None
        loop = asyncio.get_running_loop()
        sockets = bind_tcp(host, port)
        try:
            for sock in sockets:
                self._listeners.append(await loop.create_server(
                    self._protocol, sock=sock, backlog=ACCEPT_BATCH, ssl=context))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        # asyncio listened with the accept batch as the queue; the kernel queue is set apart
        listen_queue(sockets, LISTEN_QUEUE)
        return sockets

    async def run(self) -> None:
        await self._stopped.wait()

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self.bound_addresses = []
        self.public_addresses = []
        for listener in self._listeners:
            listener.close()  # no new connections; the runner's cleanup then drains the open ones
        self._listeners = []
        if self._runner is not None:
            runner, self._runner = self._runner, None
            try:
                async with asyncio.timeout(timeout + 1):
                    await runner.cleanup()
            except TimeoutError:
                log.warning("HTTP listener did not close in time")

    async def _run_shutdown_callbacks(self, _app: web.Application) -> None:
        for callback in self._on_shutdown:
            try:
                await callback()
            except Exception:
                log.exception("HTTP shutdown callback failed")

    def health(self) -> dict[str, Any]:
        bound = bool(self.bound_addresses)
        return {
            "ok": bound,
            "state": "listening" if bound else "stopped",
            "addresses": [f"{h}:{p}" for h, p in self.bound_addresses],
        }

    # -- built-in routes -------------------------------------------------------------------------

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = await self._ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def _status_route(self, _request: web.Request) -> web.Response:
        return web.json_response(await self._status())
