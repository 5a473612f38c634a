"""The FastAGI listener: accepts Asterisk's connections and runs one route handler per AGI() call.

Per connection, top to bottom:

1. Refuse at once (close, count, log with the peer address) a client outside
   ``fastagi.allowed_clients``, or any client while stopping. At ``fastagi.max_sessions``
   concurrent sessions, or ``max_sessions_per_client`` from one address, the oldest session still
   waiting for its ``agi_*`` block is closed to make room (`admission`); the new connection is
   refused only when every session holds a complete block.
2. Read the ``agi_*`` block within ``block_timeout_s``. A slow, oversized, binary or early-closing
   client costs only its own session; it is counted and closed.
3. Route by the leading word of ``agi_network_script`` (see `protocol.parse_script`). The built-in
   ``health`` route (``AGI(agi://host:port/health)``) sends nothing but the result: it sets
   ``TELEPHONYD_RESULT=OK`` and closes; a handler registered as ``health`` replaces it. An unknown
   route sets ``TELEPHONYD_RESULT=UNKNOWN_SCRIPT`` and closes.
4. Run the handler inside ``log_context(uniqueid, agi_script=route, channel)`` under an overall
   deadline of ``session_timeout_s`` from connect. Then set ``TELEPHONYD_RESULT`` to the word it
   returned; ``ERROR`` if it raised (the exception is logged); ``TIMEOUT`` if the deadline passed.
   This last SET VARIABLE is best effort, bounded by ``result_timeout_s``, and skipped when the
   session is out of step (a command was cut off mid-flight) or the socket is gone.
5. Close the socket, always: after a result, a timeout, an error, a cancellation. Asterisk waits
   for the close with no timeout of its own, holding the call's thread until then.

Events a client can repeat at will (refused or evicted connections, block timeouts, early closes,
bad blocks, unknown scripts) are counted (`FastAGICounters`, ``telephonyd_agi_sessions_evicted_total``)
and logged at most once per interval per kind, with the number held back (`LogThrottle`).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import Counter

from ..config import FastAGIConfig
from ..descriptors import ACCEPT_BATCH, listen_queue
from ..errors import ConfigError, LimitExceeded, ProtocolError
from ..logs import LogThrottle, log_context
from .admission import Admission
from .metrics import FastAGICounters, FastAGISection
from .protocol import AGIBlockParser, AGICommandTimeout, AGIConnectionClosed
from .session import AGISession

logger = logging.getLogger(__name__)

Handler = Callable[[AGISession], Awaitable[str]]

#: The channel variable the server sets to the session's result word.
RESULT_VARIABLE = "TELEPHONYD_RESULT"
HEALTH_ROUTE = "health"

# Result words the server sets itself.
RESULT_OK = "OK"
RESULT_ERROR = "ERROR"
RESULT_TIMEOUT = "TIMEOUT"
RESULT_UNKNOWN_SCRIPT = "UNKNOWN_SCRIPT"
# Outcomes counted for sessions that never reached a handler (no variable is set for these).
BLOCK_TIMEOUT = "BLOCK_TIMEOUT"
BLOCK_INVALID = "BLOCK_INVALID"
BLOCK_TOO_LARGE = "BLOCK_TOO_LARGE"
CLIENT_GONE = "CLIENT_GONE"
CANCELLED = "CANCELLED"
EVICTED = "EVICTED"

NO_ROUTE = "-"
UNKNOWN_ROUTE = "unknown"

_READ_CHUNK = 65536


async def health_route(session: AGISession) -> str:
    """The built-in ``health`` route: no command, the server then sets TELEPHONYD_RESULT=OK."""
    return RESULT_OK


class FastAGIServer:
    """Listens on ``config.listen`` and serves FastAGI sessions with ``routes``.

    ``config``: the ``fastagi`` section (addresses; port 0 picks a free port, see
    `bound_addresses`). ``routes``: route word -> ``async def handler(session) -> str`` returning
    the result word (``[A-Za-z0-9_]`` is advisable; it lands in a channel variable).
    ``counters``: where to count sessions (a new `FastAGICounters` by default; read it as
    `counters` for metrics). ``max_sessions`` overrides ``config.max_sessions`` (the descriptor
    budget).
    """

    def __init__(
        self,
        config: FastAGIConfig,
        routes: Mapping[str, Handler],
        *,
        counters: FastAGICounters | None = None,
        max_sessions: int | None = None,
    ) -> None:
        self._config = config
        self._routes: dict[str, Handler] = {HEALTH_ROUTE: health_route, **routes}
        self.counters = counters or FastAGICounters()
        self.bound_addresses: list[tuple[str, int]] = []
        self._networks = list(config.allowed_clients)
        self._allowed_cache: dict[str, bool] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state = "created"
        self._stopped = asyncio.Event()
        self._throttle = LogThrottle(logger)
        self.max_sessions = max_sessions or config.max_sessions
        self._admission = Admission(self.max_sessions, config.max_sessions_per_client)
        self.evicted = Counter("telephonyd_agi_sessions_evicted", "FastAGI sessions closed before their agi_ "
                               "block to make room for a new connection", registry=None)

    def collectors(self) -> list[Any]:
        """The server's metrics, for ``/metrics``: its instruments and its `FastAGISection`."""
        return [FastAGISection(self.counters, lambda: len(self._tasks)), self.evicted]

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listen address. ConfigError for an address that cannot be bound (exit 78);
        OSError(EADDRINUSE) as is, since another process may be about to release the port."""
        self._state = "starting"
        for address in self._config.listen:
            try:
                server = await asyncio.start_server(
                    self._on_connect,
                    address.host,
                    address.port,
                    limit=self._config.max_reply_bytes,
                    # Accepts per loop wake-up: small, so that a churning flood cannot evict a
                    # session whose block arrived but is not read yet (see `admission`).
                    backlog=ACCEPT_BATCH,
                )
                listen_queue(server.sockets, self._config.backlog)
            except OSError as exc:
                await self._close_listeners()
                self._state = "stopped"
                if exc.errno == errno.EADDRINUSE:
                    raise
                raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}", "fastagi.listen") from None
            self._servers.append(server)
            for sock in server.sockets:
                self.bound_addresses.append(tuple(sock.getsockname()[:2]))
        self._state = "listening"
        logger.info("FastAGI listening", extra={"addresses": [_fmt(a) for a in self.bound_addresses]})

    async def run(self) -> None:
        """Serve until `stop` (connections are handled by the listeners' own tasks)."""
        await self._stopped.wait()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting at once; let sessions in flight finish within ``timeout`` seconds
        (default ``drain_timeout_s``), then cancel the rest, which closes their sockets."""
        if self._state in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        timeout = self._config.drain_timeout_s if timeout is None else timeout
        self._state = "stopping"
        for server in self._servers:
            server.close()
        in_flight = set(self._tasks)
        if in_flight:
            logger.info("FastAGI draining sessions", extra={"sessions": len(in_flight), "timeout_s": timeout})
            _, pending = await asyncio.wait(in_flight, timeout=timeout)
            if pending:
                logger.warning("FastAGI cancelling sessions after drain timeout", extra={"sessions": len(pending)})
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=max(self._config.result_timeout_s, 1.0))
        await self._close_listeners()
        self._state = "stopped"
        self._stopped.set()
        logger.info("FastAGI stopped")

    def health(self) -> dict[str, Any]:
        counters = self.counters
        return {
            "ok": self._state == "listening",
            "state": self._state,
            "sessions_active": len(self._tasks),
            "sessions_idle": self._admission.idle,
            "max_sessions": self.max_sessions,
            "sessions_total": counters.duration_count,
            "results": dict(counters.results),
            "refused": dict(counters.refused),
            "bound_addresses": [_fmt(a) for a in self.bound_addresses],
        }

    async def _close_listeners(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except TimeoutError:
                pass

    # -- per connection --------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if self._state != "listening":
            self._refuse(writer, peer, "stopping")
            return
        if not self._allowed(peer[0]):
            self._refuse(writer, peer, "address")
            return
        task = asyncio.current_task()
        assert task is not None
        evictions = self._admission.evictions
        refusal = self._admission.admit(task, peer[0], writer.transport.abort)
        if self._admission.evictions != evictions:
            self.evicted.inc(self._admission.evictions - evictions)
        if refusal is not None:
            self._refuse(writer, peer, refusal)
            return
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = (NO_ROUTE, CANCELLED)
        try:
            outcome = await self._serve(reader, writer, peer, started)
        except Exception:
            logger.exception("FastAGI session failed", extra={"peer": _fmt(peer)})
            outcome = (NO_ROUTE, RESULT_ERROR)
        finally:
            _close(writer)
            if self._admission.evicted(task):
                outcome = (NO_ROUTE, EVICTED)
                self._note("agi_evicted", "FastAGI idle session closed to make room for a new connection", peer)
            self._admission.release(task)
            self._tasks.discard(task)
            self.counters.observe(outcome[0], outcome[1], loop.time() - started)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tuple[str, int], started: float
    ) -> tuple[str, str]:
        config = self._config
        try:
            async with asyncio.timeout(config.block_timeout_s):
                env, rest = await self._read_block(reader)
        except TimeoutError:
            self._note("agi_block_timeout", "FastAGI client sent no complete agi_ block in time", peer,
                       timeout_s=config.block_timeout_s)
            return NO_ROUTE, BLOCK_TIMEOUT
        except LimitExceeded as exc:
            self._note("agi_block_too_large", "FastAGI client exceeded a block limit", peer, logging.WARNING,
                       error=str(exc))
            return NO_ROUTE, BLOCK_TOO_LARGE
        except AGIConnectionClosed:
            if not self._admission.evicted(asyncio.current_task()):  # an eviction is logged as such
                self._note("agi_client_gone", "FastAGI client closed before the end of the agi_ block", peer)
            return NO_ROUTE, CLIENT_GONE
        except ProtocolError as exc:
            self._note("agi_block_invalid", "FastAGI client sent no agi_ block", peer, logging.WARNING, error=str(exc))
            return NO_ROUTE, BLOCK_INVALID
        except ConnectionError:
            if not self._admission.evicted(asyncio.current_task()):
                self._note("agi_client_gone", "FastAGI client connection lost during the agi_ block", peer)
            return NO_ROUTE, CLIENT_GONE
        self._admission.active(asyncio.current_task())

        session = AGISession(
            reader, writer, env, command_timeout_s=config.command_timeout_s, peer=peer, pending=rest
        )
        route = session.route
        with log_context(uniqueid=session.uniqueid, agi_script=route, channel=session.channel):
            handler = self._routes.get(route)
            if handler is None:
                self._note("agi_unknown_script", "FastAGI unknown script", peer, logging.WARNING,
                           script=session.script[:200])
                await self._set_result(session, RESULT_UNKNOWN_SCRIPT)
                return UNKNOWN_ROUTE, RESULT_UNKNOWN_SCRIPT
            result = await self._run_handler(handler, session, started + config.session_timeout_s)
            await self._set_result(session, result)
            logger.debug(
                "FastAGI session done",
                extra={"result": result, "commands": session.commands_sent, "hungup": session.hungup},
            )
            return route, result

    async def _read_block(self, reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
        parser = AGIBlockParser(self._config.max_line_bytes, self._config.max_block_bytes)
        read = reader.read
        while True:
            data = await read(_READ_CHUNK)
            if not data:
                raise AGIConnectionClosed("closed before the end of the agi_ block")
            if parser.feed(data):
                return parser.env, parser.rest

    async def _run_handler(self, handler: Handler, session: AGISession, deadline: float) -> str:
        try:
            async with asyncio.timeout_at(deadline) as scope:
                result = await handler(session)
        except TimeoutError:
            if scope.expired():
                logger.warning("FastAGI handler timed out", extra={"timeout_s": self._config.session_timeout_s})
                return RESULT_TIMEOUT
            logger.exception("FastAGI handler failed")
            return RESULT_ERROR
        except AGIConnectionClosed as exc:
            logger.warning("FastAGI handler lost the connection to Asterisk", extra={"error": str(exc)})
            return RESULT_ERROR
        except AGICommandTimeout as exc:
            logger.warning("FastAGI handler: Asterisk did not answer", extra={"error": str(exc)})
            return RESULT_ERROR
        except Exception:
            logger.exception("FastAGI handler failed")
            return RESULT_ERROR
        if not isinstance(result, str) or not result or "\n" in result or "\r" in result:
            logger.error("FastAGI handler returned an invalid result word", extra={"returned": repr(result)[:80]})
            return RESULT_ERROR
        return result

    async def _set_result(self, session: AGISession, result: str) -> None:
        if not session.usable:
            return
        try:
            await session.set_variable(RESULT_VARIABLE, result, timeout=self._config.result_timeout_s)
        except (ProtocolError, ValueError) as exc:
            logger.info("FastAGI could not set the result variable", extra={"error": str(exc), "result": result})

    # -- admission -------------------------------------------------------------------------------

    def _allowed(self, host: str) -> bool:
        cached = self._allowed_cache.get(host)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            allowed = False
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            allowed = any(ip.version == net.version and ip in net for net in self._networks)
        if len(self._allowed_cache) >= 1024:
            self._allowed_cache.clear()
        self._allowed_cache[host] = allowed
        return allowed

    def _refuse(self, writer: asyncio.StreamWriter, peer: tuple[str, int], reason: str) -> None:
        _close(writer)
        self.counters.refuse(reason)
        messages = {
            "address": "FastAGI connection refused: client address not allowed",
            "overload": "FastAGI connection refused: max_sessions reached",
            "client_cap": "FastAGI connection refused: max_sessions_per_client reached",
            "stopping": "FastAGI connection refused: stopping",
        }
        self._throttle.log(logging.WARNING, f"agi_refused_{reason}", messages[reason],
                           {"peer": _fmt(peer), "max_sessions": self.max_sessions,
                            "max_sessions_per_client": self._config.max_sessions_per_client})

    def _note(self, event: str, message: str, peer: tuple[str, int], level: int = logging.INFO,
              **extra: Any) -> None:
        """One line per ``event`` kind and interval (the counters have every one)."""
        self._throttle.log(level, event, message, {"peer": _fmt(peer), **extra})


def _peer(writer: asyncio.StreamWriter) -> tuple[str, int]:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return "?", 0


def _fmt(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _close(writer: asyncio.StreamWriter) -> None:
    """Close now: a FIN when everything was sent, a reset when the peer left data unread by us."""
    transport = writer.transport
    if transport.is_closing():
        return
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()
