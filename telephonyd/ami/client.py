"""`AMIClient`: one logged-in AMI session to Asterisk, kept up with reconnects.

Lifecycle: `start` checks the configuration; `run` connects, logs in and serves the session,
reconnecting until `stop`: with capped exponential backoff and jitter after a failure past the TCP
connect (login refused, banner missing), but every `refused_probe_s` while the connect itself fails
(Asterisk down or restarting), so a login follows within that much of Asterisk listening again
however long it was down. The read loop only parses
and routes: replies go to the action waiting for them, events to synchronous subscriber callbacks
(which must only enqueue), because Asterisk drops a session it cannot write to for 100 ms
(``writetimeout``). A ``Ping`` every ``ping_interval_s`` must be answered within ``ping_timeout_s``,
and a session silent for longer than both is dropped too.

After each login, after ``FullyBooted`` and after a ``Reload`` of res_pjsip the `on_connect`
callbacks run (coalesced: a request arriving while they are pending runs them once) so consumers
list what they need again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..backoff import equal_jitter
from ..config import AMIConfig
from ..errors import ConfigError, ProtocolError
from ..metrics.instruments import EventCounter
from . import actions, tls
from .connection import AMIConnection
from .dispatch import EventCallback, Subscriptions
from .errors import (
    AMIActionTimeout,
    AMIConnectionLost,
    AMIError,
    AMILoginFailed,
    AMINotConnected,
)
from .framing import check_banner, parse_messages, split_banner
from .message import AMIMessage
from .metrics import AMISection

log = logging.getLogger(__name__)

ConnectCallback = Callable[["AMIClient"], Awaitable[None]]

#: Bytes parsed and dispatched per step of the read loop (about 200 events); it yields to the event
#: loop after each, so a burst never holds it for long.
_READ_SIZE = 32 * 1024

#: Events the client acts on itself (lower case; see `AMIClient._system_event`).
_SYSTEM_EVENTS = frozenset({"fullybooted", "shutdown", "reload"})


class AMIClient:
    """AMI client for Asterisk 13-22 (and forks whose banner starts ``Asterisk Call Manager/``).

    ``config`` is the ``ami`` section: host/port, ``username`` and ``secret`` (plain or MD5
    challenge login per ``auth``), ``events`` (the login's Events header), timeouts in seconds,
    backoff bounds, line/message size caps. ``rng`` makes the backoff jitter reproducible in tests.
    """

    #: Seconds between connect attempts while the port refuses (or the connect times out).
    refused_probe_s = 0.5

    def __init__(self, config: AMIConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._subscriptions = Subscriptions()
        self._system_names: dict[str, bool] = {}  # event name as sent -> one of _SYSTEM_EVENTS
        self._connect_callbacks: list[ConnectCallback] = []
        self._action_ids = itertools.count(1)
        self._seq = 0
        self._conn: AMIConnection | None = None
        self._ssl: ssl.SSLContext | None = None
        self._stopping = asyncio.Event()
        self._stopped: asyncio.Event | None = None
        self._resync_wanted = asyncio.Event()
        self._session_task: asyncio.Task[None] | None = None
        self._session_logged_in = False
        self._session_reached = False
        self._refused_streak = 0
        self._state = "stopped"
        self._last_error: str | None = None
        self._counters = {"connects": 0, "disconnects": 0, "login_failures": 0, "events": 0, "resyncs": 0,
                          "connects_refused": 0, "malformed_skipped": 0}
        #: The banner line and the AMI version in it (``11.0.0`` on Asterisk 22).
        self.banner: str | None = None
        self.ami_version: str | None = None
        #: ``AsteriskVersion`` from CoreSettings after login (``22.10.1``), None until known.
        self.asterisk_version: str | None = None
        #: Wall-clock time (epoch s) of the last event received, None before the first.
        self.last_event_at: float | None = None

    # -- consumer API ----------------------------------------------------------------------------

    def subscribe(self, pattern: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(message)`` for each event whose name matches ``pattern``.

        ``pattern`` is an event name compared case-insensitively, with ``*`` wildcards
        (``"ContactStatus"``, ``"Dial*"``, ``"*"``). Callbacks run inside the read loop: they must
        not block or await (enqueue and return). Returns a function that unsubscribes.
        """
        return self._subscriptions.add(pattern, callback)

    def on_connect(self, callback: ConnectCallback) -> Callable[[], None]:
        """Run ``await callback(client)`` after each login, FullyBooted and res_pjsip reload."""
        self._connect_callbacks.append(callback)

        def remove() -> None:
            if callback in self._connect_callbacks:
                self._connect_callbacks.remove(callback)

        return remove

    @property
    def connected(self) -> bool:
        """True while a session is logged in."""
        return self._conn is not None and self._conn.logged_in_at is not None

    def collectors(self, events: EventCounter | None = None) -> list[AMISection]:
        """The client's metrics (``telephonyd_ami_*``), read from its own counters at scrape time;
        ``events``: an `EventCounter` subscribed to ``*``, exported with them."""
        return [AMISection(connected=lambda: self.connected, counts=self._counters,
                           pending_actions=lambda: len(self._conn.pending) if self._conn is not None else 0,
                           last_event_at=lambda: self.last_event_at, events=events)]

    async def action(self, fields: Mapping[str, Any], *, timeout: float | None = None) -> AMIMessage:
        """Send an action and return its reply (``Response: Success`` or ``Error`` alike).

        The ActionID is set by the client. Raises `AMINotConnected` when no session is logged in
        (or it ends meanwhile), `AMIActionTimeout` after ``timeout`` (default
        ``ami.action_timeout_s``), `ValueError` for a field holding a line break.
        """
        reply, _ = await self._require().request(fields, is_list=False, timeout=timeout)
        return reply

    async def list_action(
        self, fields: Mapping[str, Any], *, timeout: float | None = None
    ) -> tuple[AMIMessage, list[AMIMessage]]:
        """Send a list action; return its reply and the item events up to ``...Complete``.

        An ``Error`` reply (``No Contacts found``, ``Invalid/unknown command``) gives an empty item
        list, not an exception: the caller reads the reply. ``timeout`` bounds the wait for the
        reply and then each gap between items, so long lists are not cut off.
        """
        return await self._require().request(fields, is_list=True, timeout=timeout)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the configuration (raises `ConfigError`); connecting happens in `run`."""
        if self.config.secret is None or not self.config.secret.get_secret_value():
            raise ConfigError("an AMI secret is required", "ami.secret")
        self._ssl = tls.client_context(self.config)
        self._state = "starting"

    async def run(self) -> None:
        """Keep a session up until `stop`; peer failures only degrade `health`."""
        self._stopped = asyncio.Event()
        attempt = 0
        try:
            while not self._stopping.is_set():
                self._session_task = asyncio.create_task(self._session(), name="ami-session")
                self._session_logged_in = False
                self._session_reached = False
                try:
                    await self._session_task
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                except AMILoginFailed as exc:
                    self._counters["login_failures"] += 1
                    self._note_failure("auth_failed", exc, level=logging.ERROR)
                except (AMIError, ProtocolError, OSError, TimeoutError) as exc:
                    quiet = not self._session_reached and self._refused_streak > 0
                    self._note_failure("auth_failed" if self._state == "auth_failed" else "backoff", exc,
                                       level=logging.DEBUG if quiet else logging.WARNING)
                finally:
                    self._session_task = None
                if self._stopping.is_set():
                    break
                if self._session_logged_in:
                    attempt, self._refused_streak = 0, 0
                    delay = self._backoff(attempt)
                elif not self._session_reached:  # nothing listens yet: probe until it does
                    self._refused_streak += 1
                    self._counters["connects_refused"] += 1
                    delay = min(self.refused_probe_s, self._backoff(attempt))
                else:
                    attempt, self._refused_streak = attempt + 1, 0
                    delay = self._backoff(attempt)
                log.log(logging.DEBUG if self._refused_streak > 1 else logging.INFO, "AMI reconnect scheduled",
                        extra={"retry_in_s": round(delay, 2), "attempt": attempt})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            self._state = "stopped"
            self._stopped.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Log off (best effort), close the session and wait for `run` to return."""
        self._stopping.set()
        conn = self._conn
        if conn is not None and conn.logged_in_at is not None:
            with contextlib.suppress(AMIError, OSError, ValueError):
                await conn.request(actions.logoff(), is_list=False, timeout=min(1.0, timeout / 2))
        if self._session_task is not None:
            self._session_task.cancel()
        if self._stopped is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout)

    def health(self) -> dict[str, Any]:
        conn = self._conn
        return {
            "ok": self.connected,
            "state": self._state,
            "connected": self.connected,
            "address": f"{self.config.host}:{self.config.port}",
            "banner": self.banner,
            "asterisk_version": self.asterisk_version,
            "connected_for_s": round(time.monotonic() - conn.logged_in_at, 1)
            if conn is not None and conn.logged_in_at is not None
            else None,
            "last_event_at": self.last_event_at,
            "pending_actions": len(conn.pending) if conn is not None else 0,
            "last_error": self._last_error,
            **self._counters,
        }

    # -- one session -----------------------------------------------------------------------------

    async def _session(self) -> None:
        cfg = self.config
        self._phase("connecting")
        async with asyncio.timeout(cfg.connect_timeout_s):
            if self._ssl is None:
                reader, writer = await asyncio.open_connection(cfg.host, cfg.port)
            else:
                reader, writer = await asyncio.open_connection(
                    cfg.host, cfg.port, ssl=self._ssl, server_hostname=tls.server_hostname(cfg),
                    ssl_handshake_timeout=cfg.connect_timeout_s)
        self._session_reached = True
        conn = AMIConnection(reader, writer, self._next_action_id, default_timeout_s=cfg.action_timeout_s)
        self._conn = conn
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._read_banner(conn)
            tasks.append(asyncio.create_task(self._read_loop(conn), name="ami-read"))
            self._phase("logging_in")
            await self._login(conn)
            conn.logged_in_at = time.monotonic()
            self._session_logged_in = True
            self._state = "connected"
            self._last_error = None
            self._counters["connects"] += 1
            await self._fetch_version(conn)
            log.info("AMI connected", extra={"ami_version": self.ami_version,
                                             "asterisk_version": self.asterisk_version})
            self._resync_wanted.set()
            tasks.append(asyncio.create_task(self._keepalive(conn), name="ami-keepalive"))
            tasks.append(asyncio.create_task(self._resync_runner(), name="ami-resync"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            raise AMIConnectionLost("AMI session ended")
        finally:
            if conn.logged_in_at is not None:
                self._counters["disconnects"] += 1
            conn.logged_in_at = None
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # retrieved: the session's outcome is the exception raised above
            conn.pending.fail_all(AMIConnectionLost("AMI connection closed"))
            conn.abort()
            if self._conn is conn:
                self._conn = None

    async def _read_banner(self, conn: AMIConnection) -> None:
        cfg = self.config
        data = b""
        async with asyncio.timeout(cfg.connect_timeout_s):
            while True:
                chunk = await conn.reader.read(4096)
                if not chunk:
                    raise AMIConnectionLost("closed before the AMI banner")
                banner, rest = split_banner(data + chunk, max_line_bytes=cfg.max_line_bytes)
                if banner is not None:
                    break
                data = rest
        self.ami_version = check_banner(banner)
        self.banner = banner
        conn.rest = rest

    async def _login(self, conn: AMIConnection) -> None:
        cfg = self.config
        secret = cfg.secret.get_secret_value() if cfg.secret is not None else ""
        if cfg.auth == "md5":
            reply, _ = await conn.request(actions.challenge(), is_list=False, timeout=None)
            value = reply.get("Challenge")
            if not reply.is_success or not value:
                raise AMILoginFailed(f"MD5 challenge refused: {reply.get('Message') or reply.response}")
            fields = actions.login_md5(cfg.username, actions.md5_key(value, secret), cfg.events)
        else:
            fields = actions.login_plain(cfg.username, secret, cfg.events)
        reply, _ = await conn.request(fields, is_list=False, timeout=None)
        if not reply.is_success:
            raise AMILoginFailed(f"AMI login as {cfg.username!r} refused: {reply.get('Message') or reply.response}")

    async def _fetch_version(self, conn: AMIConnection) -> None:
        try:
            reply, _ = await conn.request(actions.core_settings(), is_list=False, timeout=None)
        except AMIActionTimeout:
            return
        if reply.is_success:
            self.asterisk_version = reply.get("AsteriskVersion") or self.asterisk_version

    async def _read_loop(self, conn: AMIConnection) -> None:
        cfg = self.config
        idle_s = cfg.ping_interval_s + cfg.ping_timeout_s
        rest = conn.rest
        reason = "AMI connection closed by Asterisk"
        try:
            if rest:
                messages, rest = parse_messages(rest, max_line_bytes=cfg.max_line_bytes,
                                                max_message_bytes=cfg.max_message_bytes,
                                                on_malformed=self._malformed)
                self._deliver(conn, messages)
            while True:
                try:
                    async with asyncio.timeout(idle_s):
                        data = await conn.reader.read(_READ_SIZE)
                except TimeoutError:
                    reason = f"nothing received from Asterisk for {idle_s:g} s"
                    raise AMIConnectionLost(reason) from None
                if not data:
                    raise AMIConnectionLost(reason)
                messages, rest = parse_messages(rest + data if rest else data, max_line_bytes=cfg.max_line_bytes,
                                                max_message_bytes=cfg.max_message_bytes,
                                                on_malformed=self._malformed)
                if messages:
                    self._deliver(conn, messages)
                    await asyncio.sleep(0)
        except ProtocolError as exc:
            reason = f"AMI peer not trusted: {exc}"
            log.error("AMI protocol violation, disconnecting", extra={"error": str(exc)})
            raise
        finally:
            conn.pending.fail_all(AMIConnectionLost(reason))

    def _malformed(self, block: str, exc: ProtocolError) -> None:
        """A message with a line that is not ``Key: Value``: logged (its first line only) and
        skipped; the session and the state built from it stay."""
        self._counters["malformed_skipped"] += 1
        log.warning("malformed AMI message skipped", extra={"error": str(exc), "first_line": block.split("\n", 1)[0][:60]})

    def _deliver(self, conn: AMIConnection, messages: list[AMIMessage]) -> None:
        """Route one read's messages: replies to their actions, events to the subscribers. One
        clock reading per read (the messages arrived together), one dict lookup per event for its
        callbacks (called here, as `Subscriptions.dispatch_event` would)."""
        now = time.monotonic()
        # Actions are only added between reads, so none waiting now means none for this read.
        pending = conn.pending if conn.pending else None
        by_name = self._subscriptions.by_name
        system = self._system_names
        seq = self._seq
        events = 0
        try:
            for message in messages:
                seq += 1
                message.seq = seq
                message.received_at = now
                if pending is not None and pending.route(message):
                    continue
                event = message.event
                if event is None:
                    log.debug("AMI reply nobody waits for", extra={"action_id": message.action_id})
                    continue
                events += 1
                is_system = system.get(event)
                if is_system is None:
                    is_system = system[event] = event.lower() in _SYSTEM_EVENTS
                if is_system:
                    self._system_event(event, message)
                for callback in by_name[event]:
                    try:
                        callback(message)
                    except Exception:
                        log.exception("AMI event callback failed", extra={"event": event})
        finally:
            self._seq = seq
            if events:
                self._counters["events"] += events
                self.last_event_at = time.time()

    def _system_event(self, event: str, message: AMIMessage) -> None:
        name = event.lower()
        if name == "fullybooted":
            self._resync_wanted.set()
        elif name == "shutdown":
            log.warning("Asterisk is shutting down", extra={"shutdown": message.get("Shutdown"),
                                                            "restart": message.get("Restart")})
            self._state = "asterisk_shutting_down"
        elif name == "reload":
            module = (message.get("Module") or "").lower()
            if module.startswith("res_pjsip") or module == "all":
                self._resync_wanted.set()

    async def _keepalive(self, conn: AMIConnection) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.ping_interval_s)
            try:
                await conn.request(actions.ping(), is_list=False, timeout=cfg.ping_timeout_s)
            except AMIActionTimeout:
                raise AMIConnectionLost(f"no answer to Ping within {cfg.ping_timeout_s:g} s") from None

    async def _resync_runner(self) -> None:
        while True:
            await self._resync_wanted.wait()
            self._resync_wanted.clear()
            self._counters["resyncs"] += 1
            await asyncio.gather(*(self._run_connect_callback(cb) for cb in list(self._connect_callbacks)))

    async def _run_connect_callback(self, callback: ConnectCallback) -> None:
        try:
            await callback(self)
        except AMINotConnected:
            pass  # the session ended; the next login runs the callback again
        except Exception:
            log.exception("AMI on_connect callback failed", extra={"callback": getattr(callback, "__qualname__", "")})

    # -- requests --------------------------------------------------------------------------------

    def _next_action_id(self) -> str:
        return f"{self.config.action_id_prefix}-{next(self._action_ids)}"

    def _require(self) -> AMIConnection:
        conn = self._conn
        if conn is None or conn.logged_in_at is None:
            raise AMINotConnected("AMI is not connected")
        return conn

    # -- helpers ---------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return equal_jitter(attempt + 1, self.config.backoff_base_s, self.config.backoff_max_s, self._rng)

    def _phase(self, state: str) -> None:
        if self._state != "auth_failed":  # stays visible until a login succeeds
            self._state = state

    def _note_failure(self, state: str, exc: BaseException, *, level: int) -> None:
        self._state = state
        self._last_error = str(exc) or type(exc).__name__
        log.log(level, "AMI session failed", extra={"error": self._last_error, "host": self.config.host,
                                                   "port": self.config.port})
