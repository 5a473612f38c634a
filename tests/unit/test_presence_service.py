"""PresenceService glue without sockets: a scripted AMI client and an in-memory contacts provider."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from telephonyd.ami.errors import AMINotConnected
from telephonyd.ami.message import AMIMessage
from telephonyd.config import Config, PresenceConfig
from telephonyd.contacts.state import ContactTable
from telephonyd.contacts.model import (
    Contact,
    ContactChange,
    contact_id,
    peer_contact_id,
)
from telephonyd.presence.service import PresenceService, PresenceUnavailable
from telephonyd.presence.state import AgentStatus

REFUSED = ({"Response": "Error", "Message": "Invalid/unknown command"}, [])


def listing(event: str, *items: dict[str, str]) -> tuple[dict[str, str], list[dict[str, str]]]:
    return {"Response": "Success", "EventList": "start"}, [{"Event": event, "ActionID": "t-1", **i} for i in items]


class ScriptedAMI:
    """What PresenceService uses of the AMI client, answering list actions from a script."""

    def __init__(self, listings: dict[str, Any]) -> None:
        self.listings = listings
        self.connected = True
        self.last_event_at: float | None = 1_795_236_855.5
        self.callbacks: dict[str, list[Any]] = {}
        self.on_connect_callbacks: list[Any] = []
        self.asked: list[str] = []

    def subscribe(self, pattern: str, callback: Any) -> Any:
        self.callbacks.setdefault(pattern.lower(), []).append(callback)
        return lambda: None

    def on_connect(self, callback: Any) -> Any:
        self.on_connect_callbacks.append(callback)
        return lambda: None

    async def list_action(self, fields: dict[str, str]) -> tuple[AMIMessage, list[AMIMessage]]:
        name = fields["Action"]
        self.asked.append(name)
        answer = self.listings.get(name, REFUSED)
        if isinstance(answer, Exception):
            raise answer
        response, items = answer
        return AMIMessage.from_fields(response), [AMIMessage.from_fields(i) for i in items]

    def fire(self, event: str, **fields: str) -> None:
        for callback in self.callbacks.get(event.lower(), []):
            callback(AMIMessage.from_fields({"Event": event, **fields}))


class MemoryContacts:
    """The contacts provider interface over the real `ContactTable` (its per-endpoint index)."""

    def __init__(self, *contacts: Contact) -> None:
        self.table = ContactTable(None)
        self.last_resync: dict[str, Any] | None = None
        self.table.replace_scope({c.id: c for c in contacts}, lambda _c: True)
        self.subscribers: list[Any] = []
        self.resyncs = 0

    def contacts_of(self, endpoint: str) -> list[Contact]:
        return self.table.contacts_of(endpoint)

    def endpoints(self) -> list[str]:
        return list(self.table.endpoints())

    def contact_count(self) -> int:
        return len(self.table)

    def subscribe_batch(self, callback: Any) -> Any:
        self.subscribers.append(callback)
        return lambda: None

    async def resync(self) -> dict[str, Any]:
        self.resyncs += 1
        return {"total": len(self.table)}

    def put(self, *contacts: Contact) -> None:
        """One batch of added/updated contacts, as ContactsSync notifies it."""
        changes: list[ContactChange] = []
        for contact in contacts:
            changes += self.table.replace_scope({contact.id: contact}, lambda c, cid=contact.id: c.id == cid,
                                                endpoint=contact.endpoint)
        for callback in self.subscribers:
            callback(changes)


def pjsip(endpoint: str, status: str = "Reachable") -> Contact:
    uri = f"sip:{endpoint}@127.0.0.1:5070"
    return Contact(contact_id(endpoint, uri), endpoint=endpoint, uri=uri, status=status)


def sip_peer(peer: str) -> Contact:
    return Contact(peer_contact_id("SIP", peer), endpoint=peer, uri=f"sip:{peer}@10.0.0.5:5060", status="Reachable")


async def started(ami: ScriptedAMI, contacts: MemoryContacts, **config: Any) -> tuple[PresenceService, list]:
    service = PresenceService(PresenceConfig(**config), ami=ami, contacts=contacts, node_id="ast1",
                              clock=lambda: 1_795_236_855.0)
    events: list = []
    service.add_listener(events.append)
    ami.connected = False  # the seed is run explicitly below
    await service.start()
    ami.connected = True
    return service, events


async def test_device_state_list_refused_falls_back_to_pjsip_show_endpoints(caplog) -> None:
    caplog.set_level(logging.DEBUG)  # every log call really formats its record
    ami = ScriptedAMI({
        "PJSIPShowEndpoints": listing("EndpointList", {"ObjectName": "1010", "DeviceState": "In use"},
                                      {"ObjectName": "1011", "DeviceState": "Unavailable"}),
    })
    service, _ = await started(ami, MemoryContacts(pjsip("1010")))
    summary = await service.seed()
    assert ami.asked == ["DeviceStateList", "PJSIPShowEndpoints", "CoreShowChannels", "QueueStatus", "PresenceStateList"]
    assert summary["source"] == "PJSIPShowEndpoints" and summary["channels"] is None
    assert [(a.endpoint, a.state, a.online) for a in service.agents()] == [
        ("1010", "on_call", True), ("1011", "offline", False)]
    assert service.health()["state"] == "seeded" and service.health()["ok"] is True
    refused = [r for r in caplog.records if r.getMessage() == "AMI list action refused"]
    assert [r.action for r in refused] == ["DeviceStateList", "CoreShowChannels", "PresenceStateList"]


async def test_no_listing_answered_retires_nothing_and_degrades_health() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "PJSIP/1010", "State": "NOT_INUSE"})})
    service, events = await started(ami, MemoryContacts(pjsip("1010")))
    await service.seed()
    assert service.agent("1010").state == "available"
    ami.listings = {}
    summary = await service.seed()
    assert summary["source"] is None and summary["retired"] == []
    assert service.agent("1010").state == "available"
    assert service.last_seed_error == "no device state listing answered"
    assert [e.kind for e in events].count("resynced") == 1


async def test_a_seed_that_loses_the_connection_raises_and_leaves_state_alone() -> None:
    ami = ScriptedAMI({"DeviceStateList": AMINotConnected("AMI is not connected")})
    service, _ = await started(ami, MemoryContacts(pjsip("1010")))
    with pytest.raises(AMINotConnected):
        await service.seed()
    assert service.last_seed_error == "AMI is not connected"
    assert service.machine._seed_from is None
    ami.connected = False
    with pytest.raises(PresenceUnavailable):
        await service.refresh()


async def test_live_events_filtering() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "PJSIP/1010", "State": "NOT_INUSE"},
                                                  {"Device": "PJSIP/carrier", "State": "NOT_INUSE"})})
    service, events = await started(ami, MemoryContacts(pjsip("1010"), pjsip("carrier")),
                                    endpoint_pattern="[0-9]+")
    await service.seed()
    assert [a.endpoint for a in service.agents()] == ["1010"]
    before = len(events)
    ami.fire("DeviceStateChange", Device="Local/s@agitest", State="INUSE")
    ami.fire("DeviceStateChange", Device="PJSIP/carrier", State="INUSE")
    ami.fire("DeviceStateChange", Device="PJSIP/1010", State="INUSE", ActionID="other-7")  # a list item
    ami.fire("DeviceStateChange", Device="PJSIP/1010", State="SLEEPING")
    assert len(events) == before
    ami.fire("Newchannel", Channel="PJSIP/1010-0000000c")
    ami.fire("DeviceStateChange", Device="PJSIP/1010", State="INUSE")
    ami.fire("Hangup", Channel="PJSIP/1010-0000000c", Cause="16")
    assert [(e.state, e.online) for e in events[before:]] == [("on_call", True), ("available", True)]


async def test_sip_peers_count_only_when_their_technology_does() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "SIP/2000", "State": "NOT_INUSE"})})
    service, _ = await started(ami, MemoryContacts(sip_peer("2000")))
    await service.seed()
    assert service.agent("2000").online is True
    only_pjsip, _ = await started(ami, MemoryContacts(sip_peer("2000")), technologies=["PJSIP"])
    await only_pjsip.seed()
    assert only_pjsip.agent("2000") is None


async def test_contact_changes_update_online_and_a_broken_listener_does_not_stop_others() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "PJSIP/1010", "State": "NOT_INUSE"})})
    contacts = MemoryContacts()
    service, events = await started(ami, contacts)

    def broken(_event: Any) -> None:
        raise RuntimeError("listener bug")

    service.add_listener(broken)
    late: list = []
    service.add_listener(late.append)
    await service.seed()
    contacts.put(pjsip("1010", "NonQualified"))
    contacts.put(pjsip("1010", "Unreachable"))
    states = [(e.state, e.online) for e in late if isinstance(e, AgentStatus)]
    assert states == [("offline", False), ("available", True), ("offline", False)]
    assert events[-1] == late[-1]


async def test_seq_starts_above_the_clock_in_milliseconds_and_status_document() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "PJSIP/1010", "State": "NOT_INUSE"})})
    service, events = await started(ami, MemoryContacts(pjsip("1010")))
    await service.seed()
    assert [(e.state, e.seq) for e in events if e.kind == "status"] == [
        ("unknown", 1_795_236_855_000 + 1), ("available", 1_795_236_855_000 + 2)]
    status = service.status()
    assert status == status | {"node_id": "ast1", "connected": True, "contacts": 1, "agents": 1, "online": 1,
                               "states": {"available": 1}, "seeded": True,
                               "last_event_at": "2026-11-21T04:54:15.500Z"}


async def test_reconfigure_wrap_up_live() -> None:
    ami = ScriptedAMI({"DeviceStateList": listing("DeviceStateChange", {"Device": "PJSIP/1010", "State": "INUSE"})})
    service, _ = await started(ami, MemoryContacts(pjsip("1010")), wrap_up_s=60)
    await service.seed()
    ami.fire("DeviceStateChange", Device="PJSIP/1010", State="NOT_INUSE")
    assert service.agent("1010").state == "wrap_up"
    service.reconfigure(Config(presence=PresenceConfig(wrap_up_s=0)))
    assert service.agent("1010").state == "available"
    await service.stop(1.0)


async def test_a_large_contacts_batch_is_worked_off_in_slices(caplog) -> None:
    """A resync-sized batch does not hold the event loop: `sync_slice` endpoints per loop turn."""
    contacts = MemoryContacts()
    service, events = await started(ScriptedAMI({}), contacts)
    service.sync_slice = 100
    contacts.put(*(pjsip(str(2000 + n)) for n in range(250)))
    assert len(service.agents()) == 100  # the first slice at once, in endpoint order
    assert [a.endpoint for a in service.agents()] == [str(2000 + n) for n in range(100)]
    contacts.put(pjsip("2000", "Unreachable"), pjsip("2249", "Unreachable"))  # overtakes a waiting one
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(service.agents()) == 250 and all(
        a.online is (a.endpoint not in ("2000", "2249")) for a in service.agents())
