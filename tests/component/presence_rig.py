"""The AMI side of one node for tests: FakeAMIServer -> real AMIClient -> ContactsSync (ps_contacts in
a real Store) -> PresenceService -> AgentStream and the /api/ami/* routes on a real HTTPServer (port 0),
optionally an MQTTPublisher. Wired the way the daemon wires them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from telephonyd.ami import AMIClient
from telephonyd.config import (
    AMIConfig,
    HTTPConfig,
    MQTTConfig,
    PresenceConfig,
    PSContactsConfig,
)
from telephonyd.contacts.schema import metadata as contacts_metadata
from telephonyd.contacts.sync import ContactsSync
from telephonyd.mqtt import MQTTPublisher
from telephonyd.presence import AgentStream, PresenceService, routes
from telephonyd.presence.feed import DashboardFeed, mount_dashboard
from telephonyd.presence.state import PresenceEvent
from telephonyd.store import Store
from telephonyd.web import HTTPServer
from tests.fakes.ami import FakeAMIServer
from tests.helpers import wait_until

ADMIN_TOKEN = "rig-admin-token"
AMI_SECRET = "rig-ami-secret"


@dataclass
class Rig:
    ami: FakeAMIServer
    store: Store
    client: AMIClient
    contacts: ContactsSync
    presence: PresenceService
    stream: AgentStream
    http: HTTPServer
    mqtt: MQTTPublisher | None = None
    feed: DashboardFeed | None = None
    events: list[PresenceEvent] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host, port = self.http.bound_addresses[0]
        return f"http://{host}:{port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def agent(self, endpoint: str) -> tuple[str, bool] | None:
        status = self.presence.agent(endpoint)
        return None if status is None else (status.state, status.online)

    async def api(self, method: str, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(method, self.base_url + path,
                                                                headers=self.auth) as resp:
            return resp.status, await resp.json()

    async def seeded(self, seeds_before: int = 0) -> None:
        await eventually(lambda: self.presence.seeds > seeds_before and self.presence.health()["state"] == "seeded"
                         and self.contacts.health()["state"] == "synced")


eventually = wait_until


@contextlib.asynccontextmanager
async def presence_rig(
    store_url: str,
    *,
    presence: PresenceConfig | None = None,
    mqtt: MQTTConfig | None = None,
    setup: Callable[[FakeAMIServer], None] | None = None,
    server: Any = None,
    node_id: str = "ast1",
) -> AsyncIterator[Rig]:
    """``server``: another started fake (a recorded-dialogue replay) in place of a FakeAMIServer."""
    ami = server if server is not None else FakeAMIServer(secret=AMI_SECRET)
    if server is None:
        await ami.start()
    if setup is not None:
        setup(ami)
    store = Store(store_url, schemas=[contacts_metadata])
    await store.start()
    client = AMIClient(AMIConfig(enabled=True, port=ami.port, secret=AMI_SECRET, ping_interval_s=30,
                                 backoff_base_s=0.05, backoff_max_s=0.2, action_timeout_s=5))
    contacts = ContactsSync(store, client, PSContactsConfig(coalesce_s=0.01), node_id=node_id)
    service = PresenceService(presence or PresenceConfig(), ami=client, contacts=contacts, node_id=node_id)
    stream = AgentStream(service.agents, queue_size=1000)
    http = HTTPServer(HTTPConfig(listen="127.0.0.1:0", admin_token=ADMIN_TOKEN),
                      status=_status, ready=_ready)
    feed = mount_dashboard(service.config, service, contacts, http)
    http.add_routes(routes(service, stream, feed.stream), auth="admin")
    http.on_shutdown(stream.close)
    publisher = MQTTPublisher(mqtt, node_id=node_id, presence=service) if mqtt is not None else None
    rig = Rig(ami, store, client, contacts, service, stream, http, publisher, feed=feed)
    service.add_listener(rig.events.append)
    service.add_listener(stream.publish_event)
    if publisher is not None:
        service.add_listener(publisher.publish_event)
    components: list[Any] = [contacts, service, client, http] + ([publisher] if publisher else [])
    for component in components:
        await component.start()
    tasks = [asyncio.create_task(c.run()) for c in components]
    try:
        await rig.seeded()
        yield rig
    finally:
        for component in reversed(components):
            await component.stop(2.0)
        await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        await ami.stop()
        await store.close()


async def _status() -> dict[str, Any]:
    return {"ok": True}


async def _ready() -> bool:
    return True
