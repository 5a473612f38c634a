"""A consumer of the MQTT presence feed, for tests: records every message under a topic prefix.

`MQTTConsumer` subscribes to ``<prefix>/#`` and keeps ``(topic, payload, retain)`` in arrival order;
`retained` reads what the broker retains under a prefix right now (complete: it waits for a marker
message it publishes after subscribing, which the broker delivers after the retained ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import aiomqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class MQTTConsumer:
    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.messages: list[Received] = []
        self._changed = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._client = aiomqtt.Client(self.host, self.port, identifier=f"consumer-{uuid.uuid4().hex[:8]}")
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/#", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            if not self._task.cancelled():
                self._task.exception()
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            self.messages.append(Received(str(message.topic), payload, bool(message.retain)))
            self._changed.set()

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every message); returns its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()


async def retained(host: str, port: int, prefix: str, timeout: float = 10.0) -> dict[str, bytes]:
    """Every non-empty retained message under ``prefix``, as {topic: payload}."""
    marker_topic = f"{prefix}/~marker/{uuid.uuid4().hex}"
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(host, port, identifier=f"snapshot-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        await client.publish(marker_topic, b"x", qos=1)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                topic = str(message.topic)
                if topic == marker_topic:
                    break
                if message.retain and message.payload:
                    payload = message.payload
                    found[topic] = payload if isinstance(payload, bytes) else str(payload).encode()
    return found
