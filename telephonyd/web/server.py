"""`HTTPServer`: one aiohttp listener for health, status, admin API, WebSocket and dialer callbacks.

Built-in routes:
- ``GET /healthz``: 200 ``{"ok": true}`` while the process runs (no auth, for load balancers).
- ``GET /readyz``: 200 when every listener is bound and the store answers, else 503 (admin auth).
- ``GET /status``: JSON status of every component (admin auth).

Edges add routes with `add_routes` before `start`. ``auth='admin'`` routes need
``Authorization: Bearer <http.admin_token>`` when a token is configured (compared in constant time;
401 otherwise); ``auth='none'`` routes do their own access control (the Ameyo callbacks).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from aiohttp import web

from ..config import HTTPConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    ) -> None:
        self.config = config
        self._admin_token = config.admin_token.get_secret_value() if config.admin_token else None
        self._status = status
        self._ready = ready
        self._app = web.Application(client_max_size=config.max_body_bytes)
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self._on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.bound_addresses: list[tuple[str, int]] = []
        self.requests_total = 0
        self.add_routes([web.get("/healthz", self._healthz)], auth="none")
        self.add_routes([web.get("/readyz", self._readyz), web.get("/status", self._status_route)], auth="admin")

    # -- configuration ---------------------------------------------------------------------------

    def set_admin_token(self, token: str | None) -> None:
        """Replace the admin token (SIGHUP reload)."""
        self._admin_token = token or None

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

    def _guard(self, handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.authorized(request):
                log.warning("admin request refused", extra={"path": request.path, "peer": request.remote})
                return json_error(401, "admin token required", hint="Authorization: Bearer <http.admin_token>")
            return await handler(request)

        return guarded

    def authorized(self, request: web.Request) -> bool:
        token = self._admin_token
        if token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), token.encode())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener; raises OSError when the address is taken."""
        self._app.on_shutdown.append(self._run_shutdown_callbacks)
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.listen.host, self.config.listen.port, backlog=1024)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.bound_addresses = [s.getsockname()[:2] for s in sockets]
        log.info("HTTP listener bound", extra={"addresses": [f"{h}:{p}" for h, p in self.bound_addresses]})

    async def run(self) -> None:
        await self._stopped.wait()

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self.bound_addresses = []
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
