"""`MQTTPublisher`: agent presence to an MQTT broker (aiomqtt >= 2.5), in the zigbee2mqtt style.

Connection life, top to bottom:
1. connect with a fixed client id (``telephonyd-<node_id>`` unless ``mqtt.client_id``) and a last will
   of retained ``offline`` on ``<base>/<node_id>/status`` (so a dead daemon reads as offline);
2. read the agent topics the broker retains for this node (a subscription ended by a marker message
   we publish to ourselves), publish retained ``online``, republish every agent's current state, and,
   once presence has completed a resync, clear the retained topic of every endpoint it no longer knows;
3. publish changes as they come: retained ``agents/<endpoint>`` plus a delta on
   ``events/agent_status``; an `AgentRetired` clears the endpoint's retained topic (empty payload);
4. on a clean stop, publish what is queued (within the stop timeout), then retained ``offline``, then
   DISCONNECT (the broker drops the will). A lost broker means reconnecting with capped exponential
   backoff and jitter; changes queued meanwhile are superseded by the full republish.

Presence pushes through `publish_event` (synchronous, never blocks): a `LatestStateBuffer` bounded by
``mqtt.queue_size`` sits in between. Call events come through `publish_call` into their own queue
(same bound; past it the oldest are dropped and counted), published in order after presence
changes; on connect, retained ``calls/<linkedid>`` topics of calls no longer live are cleared.

With ``mqtt.discovery`` each agent is also announced to Home Assistant (`discovery`): a retained
config on ``<discovery_prefix>/sensor/<object_id>/config`` before its first state on a connection,
cleared (empty retained payload) whenever its agent topic is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiomqtt

from ..backoff import equal_jitter
from ..config import MQTTConfig
from ..errors import ConfigError
from .. import __version__
from .metrics import MQTTSection
from .buffer import LatestStateBuffer
from .discovery import config_payload, config_topic
from .topics import OFFLINE, ONLINE, Topics, agent_payload

log = logging.getLogger(__name__)


class PresenceEvent(Protocol):
    """What presence emits: ``kind`` 'status' | 'retired' | 'resynced'; see telephonyd.presence.state."""

    kind: str

    def as_dict(self) -> dict[str, Any]: ...


class PresenceSource(Protocol):
    """The presence side as the publisher sees it (the presence service satisfies it)."""

    @property
    def seeded(self) -> bool: ...

    def agents(self) -> Iterable[Any]: ...


class MQTTPublisher:
    """Publish presence to MQTT. Component shape: `start`, `run`, `stop`, `health`.

    ``config``: the ``mqtt`` section. ``node_id``: the topic level after the base topic.
    ``presence``: `PresenceSource` (``agents()`` yields objects with ``endpoint`` and ``as_dict()``,
    ``seeded`` is True once a complete resync has happened). Connect it as a presence listener:
    ``presence.add_listener(publisher.publish_event)``.
    """

    def __init__(self, config: MQTTConfig, *, node_id: str, presence: PresenceSource,
                 live_calls: Callable[[], Iterable[str]] | None = None) -> None:
        self.config = config
        self.live_calls = live_calls
        self._calls: deque[tuple[str, bytes, bool]] = deque()
        self.calls_dropped = 0
        self.node_id = node_id
        self.presence = presence
        self.topics = Topics(config.base_topic, node_id)
        url = urlsplit(config.url)
        self.host = url.hostname or "127.0.0.1"
        self.tls = url.scheme == "mqtts"
        self.port = url.port or (8883 if self.tls else 1883)
        self.client_id = config.client_id or f"telephonyd-{node_id}"
        self._buffer = LatestStateBuffer(config.queue_size)
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tls_context: ssl.SSLContext | None = None
        self._client: aiomqtt.Client | None = None
        self._retained: set[str] = set()
        self._announced: set[str] = set()  # endpoints whose discovery config went out on this connection
        self._drain_deadline: float | None = None
        self._running = False
        self.state = "new"
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None

    # -- presence side ---------------------------------------------------------------------------

    def publish_event(self, event: PresenceEvent) -> None:
        """Queue a presence event for the broker; never blocks, never raises on a full queue."""
        if not self.config.enabled:
            return
        self._buffer.push(event)
        self._wakeup.set()

    def publish_call(self, linkedid: str, payload: bytes, *, ended: bool) -> None:
        """Queue one call event: retained ``calls/<linkedid>`` (cleared when ``ended``) and
        ``events/call``; never blocks."""
        if not self.config.enabled:
            return
        while len(self._calls) + 2 > self.config.queue_size * 2:
            self._calls.popleft()
            self.calls_dropped += 1
        self._calls.append((self.topics.call(linkedid), b"" if ended else payload, True))
        self._calls.append((self.topics.call_events, payload, False))
        self._wakeup.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the TLS setup (raises `ConfigError`); the broker is reached in `run`."""
        if self.tls:
            try:
                self._tls_context = ssl.create_default_context(cafile=self.config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the CA file: {exc}", "mqtt.ca_file") from None
        self.state = "disabled" if not self.config.enabled else "connecting"

    async def run(self) -> None:
        """Stay connected until `stop`; reconnects with capped exponential backoff and jitter."""
        if not self.config.enabled:
            await self._stopping.wait()
            return
        self._running = True
        attempt = 0
        try:
            while not self._stopping.is_set():
                started, connects = time.monotonic(), self.connects
                try:
                    await self._session()
                except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    log.warning("MQTT broker connection lost", extra={
                        "broker": f"{self.host}:{self.port}", "error": self.last_error})
                finally:
                    self._client = None
                if self._stopping.is_set():
                    break
                self.state = "disconnected"
                if self.connects > connects and time.monotonic() - started > 10:
                    attempt = 0  # the link held for a while: start the backoff over
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), equal_jitter(attempt, 1.0, self.config.backoff_max_s))
        finally:
            self._running = False
            self.state = "stopped"
            self._stopped.set()

    async def stop(self, timeout: float) -> None:
        """Publish what is queued and a retained ``offline``, then disconnect cleanly."""
        self._drain_deadline = time.monotonic() + max(0.0, timeout * 0.8)
        self._stopping.set()
        self._wakeup.set()
        if not self._running:
            self.state = "stopped"
            return
        try:
            async with asyncio.timeout(timeout):
                await self._stopped.wait()
        except TimeoutError:
            log.warning("MQTT publisher did not stop in time")

    def collectors(self) -> list[MQTTSection]:
        """The publisher's metrics (``telephonyd_mqtt_*``), read from its own state."""
        return [MQTTSection(connected=lambda: self.state == "connected", published=lambda: self.published,
                            dropped=lambda: self._buffer.dropped, queued=lambda: len(self._buffer))]

    def health(self) -> dict[str, Any]:
        connected = self.state == "connected"
        return {
            "ok": connected or self.state in ("disabled", "stopped"),
            "state": self.state,
            "broker": f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}",
            "queued": len(self._buffer),
            "dropped": self._buffer.dropped,
            "calls_queued": len(self._calls),
            "calls_dropped": self.calls_dropped,
            "published": self.published,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    # -- one broker connection -------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        password = self.config.password.get_secret_value() if self.config.password else None
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.config.username,
            password=password,
            identifier=self.client_id,
            will=aiomqtt.Will(self.topics.status, OFFLINE, qos=1, retain=True),
            keepalive=self.config.keepalive_s,
            timeout=self.config.publish_timeout_s,
            tls_context=self._tls_context,
            clean_session=True,
        )

    async def _session(self) -> None:
        client = self._make_client()
        async with asyncio.timeout(self.config.connect_timeout_s + 5):
            await client.__aenter__()
        self._client = client
        clean_exit = False
        try:
            self.connects += 1
            await self._on_connected(client)
            self.state = "connected"
            log.info("MQTT broker connected", extra={"broker": f"{self.host}:{self.port}",
                                                    "client_id": self.client_id})
            await self._publish_loop(client)
            await self._publish(client, self.topics.status, OFFLINE, retain=True)
            clean_exit = True
        finally:
            if not clean_exit:
                # Leaving on an error or a cancellation: say offline ourselves if the link still
                # works (a DISCONNECT below makes the broker drop the will).
                with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._publish(client, self.topics.status, OFFLINE, retain=True)
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                async with asyncio.timeout(self.config.publish_timeout_s):
                    await client.__aexit__(None, None, None)

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        self._announced.clear()
        self._retained |= await self._retained_on_broker(client)
        await self._publish(client, self.topics.status, ONLINE, retain=True)
        await self._republish_all(client)
        if self.live_calls is not None:
            await self._clear_ended_calls(client)

    async def _clear_ended_calls(self, client: aiomqtt.Client) -> None:
        """Clear retained ``calls/<linkedid>`` topics of calls that are not live (best effort)."""
        stale: list[str] = []
        marker = uuid.uuid4().hex.encode()
        try:
            await client.subscribe(self.topics.calls_filter, qos=1)
            await client.subscribe(self.topics.sweep_marker, qos=1)
            await client.publish(self.topics.sweep_marker, marker, qos=1)
            async with asyncio.timeout(self.config.publish_timeout_s):
                async for message in client.messages:
                    if str(message.topic) == self.topics.sweep_marker and message.payload == marker:
                        break
                    if message.payload and str(message.topic).startswith(self.topics.call("")):
                        stale.append(str(message.topic))
        except TimeoutError:
            log.warning("MQTT retained call topics not fully read", extra={"found": len(stale)})
        finally:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(self.topics.sweep_marker)
                await client.unsubscribe(self.topics.calls_filter)
        assert self.live_calls is not None
        live = {self.topics.call(linkedid) for linkedid in self.live_calls()}
        for topic in stale:
            if topic not in live:
                await self._publish(client, topic, b"", retain=True)

    async def _retained_on_broker(self, client: aiomqtt.Client) -> set[str]:
        """Endpoints whose agent topic the broker retains for this node (best effort)."""
        found: set[str] = set()
        marker = uuid.uuid4().hex.encode()
        try:
            granted = [*await client.subscribe(self.topics.agents_filter, qos=1),
                       *await client.subscribe(self.topics.sweep_marker, qos=1)]
            if any(_refused(code) for code in granted):
                log.warning("MQTT broker refused the subscription; retained agent topics not read")
                return found
            await client.publish(self.topics.sweep_marker, marker, qos=1)
            async with asyncio.timeout(self.config.publish_timeout_s):
                async for message in client.messages:
                    topic = str(message.topic)
                    if topic == self.topics.sweep_marker and message.payload == marker:
                        break
                    endpoint = self.topics.endpoint_of(topic)
                    if endpoint is not None and message.payload:
                        found.add(endpoint)
        except TimeoutError:
            log.warning("MQTT retained agent topics not fully read", extra={"found": len(found)})
        finally:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.unsubscribe(self.topics.sweep_marker)
                await client.unsubscribe(self.topics.agents_filter)
        return found

    async def _republish_all(self, client: aiomqtt.Client) -> None:
        """Every agent's current state (retained), then clear endpoints presence no longer knows."""
        self._buffer.clear()
        agents = [agent.as_dict() for agent in self.presence.agents()]
        for agent in agents:
            await self._announce(client, agent["endpoint"])
            await self._publish(client, self.topics.agent(agent["endpoint"]), agent_payload(agent), retain=True)
            self._retained.add(agent["endpoint"])
        if self.presence.seeded:
            await self._clear_unknown(client, {agent["endpoint"] for agent in agents})

    async def _clear_unknown(self, client: aiomqtt.Client, known: set[str]) -> None:
        for endpoint in sorted(self._retained - known):
            await self._clear(client, endpoint)

    async def _announce(self, client: aiomqtt.Client, endpoint: str) -> None:
        """The Home Assistant discovery config of ``endpoint`` (once per connection), when enabled."""
        if self.config.discovery and endpoint not in self._announced:
            await self._publish(client, config_topic(self.config.discovery_prefix, self.node_id, endpoint),
                                config_payload(self.topics, self.node_id, endpoint, __version__), retain=True)
            self._announced.add(endpoint)

    async def _clear(self, client: aiomqtt.Client, endpoint: str) -> None:
        if self.config.discovery:  # Home Assistant deletes the entity on an empty retained config
            await self._publish(client, config_topic(self.config.discovery_prefix, self.node_id, endpoint), b"",
                                retain=True)
            self._announced.discard(endpoint)
        await self._publish(client, self.topics.agent(endpoint), b"", retain=True)
        self._retained.discard(endpoint)
        log.info("MQTT agent topic cleared", extra={"endpoint": endpoint})

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        watcher = asyncio.create_task(self._watch(client), name="mqtt-watch")
        try:
            while True:
                if self._buffer.resync_needed:
                    await self._republish_all(client)
                    continue
                event = self._buffer.pop()
                if event is not None:
                    await self._publish_event(client, event)
                    if self._stopping.is_set() and self._past_drain_deadline():
                        return
                    continue
                if self._calls:
                    topic, payload, retain = self._calls[0]
                    await self._publish(client, topic, payload, retain=retain)
                    self._calls.popleft()  # only once published: a lost link sends it again
                    if self._stopping.is_set() and self._past_drain_deadline():
                        return
                    continue
                if self._stopping.is_set():
                    return
                self._wakeup.clear()
                waiter = asyncio.create_task(self._wakeup.wait())
                try:
                    await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if watcher.done():
                    watcher.result()
                    raise aiomqtt.MqttError("broker connection closed")
        finally:
            if not watcher.done():
                watcher.cancel()
                await asyncio.wait({watcher})
            if not watcher.cancelled():
                watcher.exception()  # retrieved: the loop above already acted on it

    def _past_drain_deadline(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Returns or raises `aiomqtt.MqttError` when the connection goes away."""
        async for _message in client.messages:
            pass

    async def _publish_event(self, client: aiomqtt.Client, event: Any) -> None:
        if event.kind == "status":
            agent = event.as_dict()
            payload = agent_payload(agent)
            await self._announce(client, agent["endpoint"])
            await self._publish(client, self.topics.agent(agent["endpoint"]), payload, retain=True)
            self._retained.add(agent["endpoint"])
            await self._publish(client, self.topics.agent_events, payload, retain=False)
        elif event.kind == "retired":
            await self._clear(client, event.endpoint)
        elif event.kind == "resynced":
            await self._clear_unknown(client, set(event.endpoints))

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool) -> None:
        await client.publish(topic, payload, qos=self.config.qos, retain=retain,
                             timeout=self.config.publish_timeout_s)
        self.published += 1


def _refused(code: Any) -> bool:
    """A SUBACK entry that refuses the subscription (0x80 and above; paho ReasonCode or int)."""
    failure = getattr(code, "is_failure", None)
    return bool(failure) if failure is not None else int(code) >= 0x80
