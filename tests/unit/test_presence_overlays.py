"""Queue membership, presence and Custom: device parsing on Asterisk 22.10.1 lab recordings, and the
overlay precedence (pure)."""

from __future__ import annotations

import pytest

from telephonyd.ami.framing import parse_messages
from telephonyd.presence.availability import (
    custom_device,
    custom_from_list,
    overlay,
    presence_from_list,
    queue_member,
    queue_members_from_list,
)
from telephonyd.presence.devices import EndpointFilter
from telephonyd.presence.state import PresenceMachine
from tests.fakes.ami_replies import ReplyBook
from tests.fakes.ami_wire import AMI_RECORDINGS, recorded_events

AGENTS = EndpointFilter.build()
BOOK = ReplyBook()


def items(action: str, where: str) -> list:
    messages, _ = parse_messages(BOOK.reply(action, where=where))
    return messages[1:-1]


def test_queue_status_items_give_membership_and_pause() -> None:
    listed = queue_members_from_list(items("QueueStatus", "ActionID: a50-2"), AGENTS)
    assert listed["1011"]["sales"][0] is True and listed["1011"]["sales"][1]  # paused with its reason
    assert listed["1010"] == {"sales": (False, "")}
    assert queue_members_from_list(items("QueueStatus", "ActionID: a48"), AGENTS) == {
        "1010": {"sales": (False, "")}, "1011": {"sales": (False, "")}, "1012": {"sales": (False, "")}}


def test_queue_member_pause_events_recorded_in_the_lab() -> None:
    events = [dict(m) for m in recorded_events("lab_17_queue_pause_unpause.raw", event="QueueMemberPause")]
    parsed = [queue_member(e, AGENTS) for e in events]
    assert parsed[0] == ("1011", "sales", (True, "Lunch break"))
    assert parsed[1] == ("1011", "sales", (False, ""))
    assert queue_member({"Queue": "sales", "Interface": "Local/1011@agents"}, AGENTS) is None


def test_presence_state_list_and_custom_devices() -> None:
    assert presence_from_list(items("PresenceStateList", "ActionID: a42"), AGENTS) == {
        "1011": ("away", "Lunch", "back at 2"), "1010": ("dnd", "", "")}
    listed = custom_from_list(items("DeviceStateList", "ActionID: a43"), {"DND": "dnd"}, AGENTS)
    assert listed == {"1010": {"dnd": True}}
    assert custom_device("Custom:DND1010", "NOT_INUSE", {"DND": "dnd"}, AGENTS) == ("1010", "dnd", False)
    assert custom_device("Custom:OTHER1", "BUSY", {"DND": "dnd"}, AGENTS) is None
    assert custom_device("PJSIP/1010", "BUSY", {"DND": "dnd"}, AGENTS) is None
    assert (AMI_RECORDINGS / "lab_actions" / "43_DeviceStateList_custom.txt").exists()


@pytest.mark.parametrize(("queues", "custom", "presence", "expected"), [
    ({}, {}, None, (None, None)),
    ({"a": (True, "x"), "b": (False, "")}, {}, None, (None, None)),          # not paused everywhere
    ({"a": (True, ""), "b": (True, "y")}, {}, None, ("paused", "y")),
    ({"a": (True, "x")}, {"dnd": True}, None, ("dnd", None)),                 # dnd over paused
    ({"a": (True, "x")}, {}, ("away", "Lunch", ""), ("paused", "x")),         # paused over away
    ({}, {}, ("xa", "", "back monday"), ("away", "back monday")),
    ({}, {}, ("chat", "", ""), (None, None)),
    ({}, {"dnd": False}, ("unavailable", "", ""), ("away", None)),
])
def test_overlay_precedence(queues, custom, presence, expected) -> None:
    assert overlay(queues, custom, presence) == expected


def test_machine_precedence_over_calls_offline_and_wrap_up() -> None:
    now = [1000.0]
    machine = PresenceMachine(wrap_up_s=30, clock=lambda: now[0])
    machine.set_contacts("1010", {"c": "Reachable"})
    machine.device_state("1010", "NOT_INUSE")
    assert machine.get("1010").state == "available"
    machine.queue_member("1010", "sales", (True, "Lunch"))
    assert (machine.get("1010").state, machine.get("1010").reason) == ("paused", "Lunch")
    machine.device_state("1010", "RINGING")
    assert machine.get("1010").state == "ringing" and machine.get("1010").reason is None
    machine.device_state("1010", "INUSE")
    machine.device_state("1010", "NOT_INUSE")  # wrap-up hidden under the pause
    assert machine.get("1010").state == "paused"
    machine.presence_state("1010", ("dnd", "", ""))
    assert machine.get("1010").state == "dnd"
    machine.set_contacts("1010", {"c": "Unreachable"})
    assert machine.get("1010").state == "offline"
    machine.set_contacts("1010", {"c": "Reachable"})
    machine.presence_state("1010", ("available", "", ""))
    machine.queue_member("1010", "sales", None)
    assert machine.get("1010").state == "available"  # the wrap-up ended while offline
