"""Queue pause, Custom:DND and PRESENCE_STATE against a real Asterisk 22.10.1 with app_queue, replayed:
the daemon's AMI dialogue recorded by tests/tools/lab_availability.py (see the conformance README)
is played back to the real AMI client, contacts sync and presence; telephonyd must send exactly the
recorded actions (QueueStatus and PresenceStateList included) and follow each change."""

from __future__ import annotations

import asyncio
import contextlib

from telephonyd.ami import AMIClient
from telephonyd.config import AMIConfig, PresenceConfig, PSContactsConfig
from telephonyd.contacts.schema import metadata as contacts_metadata
from telephonyd.contacts.sync import ContactsSync
from telephonyd.presence import PresenceService
from telephonyd.presence.state import AgentStatus
from telephonyd.store import Store
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.ami_replay import AMIReplay
from tests.helpers import wait_until

RECORDING = ASTERISK_FIXTURES / "conformance" / "availability_ami_dialogue.jsonl"


async def test_pause_dnd_and_presence_from_the_recorded_lab_dialogue(sqlite_url: str) -> None:
    store = Store(sqlite_url, schemas=[contacts_metadata])
    await store.start()
    events: list[AgentStatus] = []
    async with AMIReplay(RECORDING) as server:
        client = AMIClient(AMIConfig(enabled=True, port=server.port, secret="redacted", ping_interval_s=30,
                                     backoff_base_s=0.05, backoff_max_s=0.2, action_timeout_s=5))
        contacts = ContactsSync(store, client, PSContactsConfig(coalesce_s=0.01), node_id="lab1")
        presence = PresenceService(PresenceConfig(endpoint_pattern="1013"), ami=client, contacts=contacts,
                                   node_id="lab1")
        presence.add_listener(lambda e: events.append(e) if isinstance(e, AgentStatus) else None)
        components = [contacts, presence, client]
        for component in components:
            await component.start()
        tasks = [asyncio.create_task(c.run()) for c in components]
        try:
            await wait_until(server.finished.is_set, timeout=30, what="the recorded dialogue played")
            assert server.unexpected == [] and server.missing == []
            await wait_until(lambda: [(e.state, e.reason) for e in events][-7:] == [
                ("available", None), ("paused", "Lab break"), ("available", None), ("dnd", None),
                ("available", None), ("dnd", None), ("available", None)], timeout=5, what="the states")
            sent = [dict(f)["Action"] for f in server.played[0].sent]
            assert {"QueueStatus", "PresenceStateList", "DeviceStateList"} <= set(sent)
        finally:
            for component in reversed(components):
                await component.stop(2.0)
            await asyncio.wait(tasks, timeout=5)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await store.close()
