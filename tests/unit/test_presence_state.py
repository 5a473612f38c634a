"""The presence state machine: device states, contact rules, seq, wrap-up, Hangup cross-check, seeds."""

from __future__ import annotations

import pytest

from telephonyd.presence.state import (
    AgentRetired,
    AgentStatus,
    PresenceMachine,
    iso_utc,
)

T0 = 1_795_236_855.0  # 2026-11-21T04:54:15Z, the time of the recordings


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def registered(machine: PresenceMachine, endpoint: str = "1010", status: str = "Reachable") -> None:
    machine.set_contacts(endpoint, {f"{endpoint};@abc": status})


def statuses(events) -> list[tuple[str, str, bool]]:
    return [(e.endpoint, e.state, e.online) for e in events if isinstance(e, AgentStatus)]


@pytest.mark.parametrize(
    ("device_state", "state"),
    [
        ("NOT_INUSE", "available"),
        ("INUSE", "on_call"),
        ("BUSY", "on_call"),
        ("RINGING", "ringing"),
        ("RINGINUSE", "ringing"),
        ("ONHOLD", "on_hold"),
        ("UNAVAILABLE", "offline"),
        ("INVALID", "offline"),
        ("UNKNOWN", "unknown"),
    ],
)
def test_every_device_state_maps_while_online(device_state: str, state: str) -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.device_state("1010", device_state)
    agent = machine.get("1010")
    assert agent is not None
    assert (agent.state, agent.online) == (state, True)


def test_known_contact_without_device_state_is_unknown() -> None:
    machine = PresenceMachine()
    assert statuses(machine.set_contacts("1010", {"c1": "NonQualified"})) == [("1010", "unknown", True)]


@pytest.mark.parametrize(
    ("contact_statuses", "online"),
    [
        ({"c1": "NonQualified"}, True),
        ({"c1": "Reachable"}, True),
        ({"c1": "Unknown"}, True),
        ({"c1": "Created"}, True),
        ({"c1": "Unreachable"}, False),
        ({"c1": "Removed"}, False),
        ({"c1": "Unreachable", "c2": "Reachable"}, True),
        ({"c1": "Unreachable", "c2": "Removed"}, False),
        ({}, False),
    ],
)
def test_online_needs_one_usable_contact(contact_statuses: dict[str, str], online: bool) -> None:
    machine = PresenceMachine()
    machine.device_state("1010", "NOT_INUSE")
    machine.set_contacts("1010", contact_statuses)
    agent = machine.get("1010")
    assert agent is not None
    assert agent.online is online
    assert agent.state == ("available" if online else "offline")


def test_offline_when_no_usable_contact_even_with_a_stale_busy_device_state() -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.device_state("1010", "INUSE")
    events = machine.set_contacts("1010", {"1010;@abc": "Unreachable"})
    assert statuses(events) == [("1010", "offline", False)]
    # the device state alone cannot bring it back
    assert machine.device_state("1010", "NOT_INUSE") == []


def test_register_then_unregister_in_wire_order() -> None:
    """02_register_ami_events_all: ContactStatus NonQualified, Reachable, DeviceStateChange NOT_INUSE;
    unregister: DeviceStateChange UNAVAILABLE, ContactStatus Removed."""
    machine = PresenceMachine()
    machine.device_state("1010", "UNAVAILABLE")
    seen = []
    seen += machine.set_contacts("1010", {"c": "NonQualified"})
    seen += machine.set_contacts("1010", {"c": "Reachable"})
    seen += machine.device_state("1010", "NOT_INUSE")
    seen += machine.device_state("1010", "UNAVAILABLE")
    seen += machine.set_contacts("1010", {"c": "Removed"})
    seen += machine.set_contacts("1010", {})
    assert statuses(seen) == [
        ("1010", "offline", True),
        ("1010", "available", True),
        ("1010", "offline", True),
        ("1010", "offline", False),
    ]


def test_identical_updates_emit_nothing() -> None:
    machine = PresenceMachine()
    registered(machine)
    assert machine.device_state("1010", "NOT_INUSE") != []
    assert machine.device_state("1010", "NOT_INUSE") == []
    assert machine.set_contacts("1010", {"1010;@abc": "NonQualified"}) == []  # still online
    assert machine.device_state("1010", "BUSY") != []
    assert machine.device_state("1010", "INUSE") == []  # both are on_call


def test_seq_only_grows_per_endpoint_and_since_follows_the_clock() -> None:
    clock = FakeClock()
    machine = PresenceMachine(clock=clock, seq_origin=500)
    registered(machine, "1010")
    registered(machine, "1011")
    seqs: dict[str, list[int]] = {"1010": [], "1011": []}
    for state in ("NOT_INUSE", "RINGING", "INUSE", "ONHOLD", "INUSE", "NOT_INUSE"):
        clock.advance(1.5)
        for event in machine.device_state("1010", state):
            seqs[event.endpoint].append(event.seq)
    for event in machine.device_state("1011", "NOT_INUSE"):
        seqs[event.endpoint].append(event.seq)
    assert seqs["1010"] == sorted(set(seqs["1010"])) and len(seqs["1010"]) == 6
    assert seqs["1010"][0] == 502  # the contact made the first event (501)
    assert seqs["1011"] == [502]
    agent = machine.get("1010")
    assert agent is not None and agent.since == iso_utc(clock.now) == "2026-11-21T04:54:24.000Z"


def test_wrap_up_after_a_call_then_available_when_it_expires() -> None:
    clock = FakeClock()
    machine = PresenceMachine(wrap_up_s=30, clock=clock)
    registered(machine)
    machine.device_state("1010", "NOT_INUSE")
    machine.device_state("1010", "INUSE")
    clock.advance(60)
    assert statuses(machine.device_state("1010", "NOT_INUSE")) == [("1010", "wrap_up", True)]
    assert machine.next_deadline() == clock.now + 30
    assert machine.device_state("1010", "NOT_INUSE") == []  # a repeated idle keeps the wrap-up
    clock.advance(29.9)
    assert machine.expire() == []
    clock.advance(0.2)
    events = machine.expire()
    assert statuses(events) == [("1010", "available", True)]
    assert machine.next_deadline() is None
    assert events[0].since == iso_utc(clock.now)


def test_a_new_call_cancels_the_wrap_up() -> None:
    clock = FakeClock()
    machine = PresenceMachine(wrap_up_s=30, clock=clock)
    registered(machine)
    machine.device_state("1010", "ONHOLD")
    machine.device_state("1010", "NOT_INUSE")
    assert machine.get("1010").state == "wrap_up"
    assert statuses(machine.device_state("1010", "RINGING")) == [("1010", "ringing", True)]
    assert machine.next_deadline() is None
    clock.advance(60)
    assert machine.expire() == []
    # a call that only rang and was not answered starts no wrap-up
    assert statuses(machine.device_state("1010", "NOT_INUSE")) == [("1010", "available", True)]


def test_going_offline_cancels_the_wrap_up() -> None:
    machine = PresenceMachine(wrap_up_s=30, clock=FakeClock())
    registered(machine)
    machine.device_state("1010", "INUSE")
    machine.device_state("1010", "NOT_INUSE")
    assert statuses(machine.set_contacts("1010", {})) == [("1010", "offline", False)]
    assert machine.next_deadline() is None


def test_wrap_up_disabled_by_default_and_by_reload() -> None:
    clock = FakeClock()
    machine = PresenceMachine(clock=clock)
    registered(machine)
    machine.device_state("1010", "INUSE")
    assert statuses(machine.device_state("1010", "NOT_INUSE")) == [("1010", "available", True)]
    machine.set_wrap_up(20)
    machine.device_state("1010", "INUSE")
    assert machine.device_state("1010", "NOT_INUSE")[0].state == "wrap_up"
    assert statuses(machine.set_wrap_up(0)) == [("1010", "available", True)]


def test_last_channel_hangup_ends_the_call_state() -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.channel_created("1010", "PJSIP/1010-00000000")
    machine.device_state("1010", "INUSE")
    assert statuses(machine.channel_hungup("1010", "PJSIP/1010-00000000")) == [("1010", "available", True)]
    # Asterisk's own DeviceStateChange follows the Hangup (06b recording): no second event
    assert machine.device_state("1010", "NOT_INUSE") == []


def test_hangup_of_one_of_two_channels_keeps_the_call() -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.channel_created("1010", "PJSIP/1010-00000001")
    machine.channel_created("1010", "PJSIP/1010-00000002")
    machine.device_state("1010", "INUSE")
    assert machine.channel_hungup("1010", "PJSIP/1010-00000001") == []
    assert machine.get("1010").state == "on_call"
    assert statuses(machine.channel_hungup("1010", "PJSIP/1010-00000002")) == [("1010", "available", True)]


def test_a_device_state_newer_than_the_hangup_wins() -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.channel_created("1010", "PJSIP/1010-00000003")
    machine.device_state("1010", "RINGING")
    machine.channel_hungup("1010", "PJSIP/1010-00000003")
    assert statuses(machine.device_state("1010", "INUSE")) == [("1010", "on_call", True)]


def test_hangup_starts_the_wrap_up_like_an_idle_device_state() -> None:
    machine = PresenceMachine(wrap_up_s=10, clock=FakeClock())
    registered(machine)
    machine.channel_created("1010", "PJSIP/1010-00000004")
    machine.device_state("1010", "INUSE")
    assert statuses(machine.channel_hungup("1010", "PJSIP/1010-00000004")) == [("1010", "wrap_up", True)]


def test_hangup_while_idle_or_offline_changes_nothing() -> None:
    machine = PresenceMachine()
    registered(machine)
    machine.device_state("1010", "NOT_INUSE")
    machine.channel_created("1010", "PJSIP/1010-00000005")
    assert machine.channel_hungup("1010", "PJSIP/1010-00000005") == []
    assert machine.channel_hungup("9999", "PJSIP/9999-00000006") == []
    assert machine.get("9999") is None


def test_seed_sets_states_retires_the_gone_and_keeps_seq_counting() -> None:
    machine = PresenceMachine()
    registered(machine, "1010")
    machine.device_state("1010", "NOT_INUSE")
    machine.device_state("1099", "UNAVAILABLE")
    token = machine.begin_seed()
    events = machine.apply_seed(
        token,
        device_states={"1010": "INUSE", "1011": "UNAVAILABLE", "1012": "INVALID"},
        contacts={"1010": {"1010;@abc": "Reachable"}},
        channels={"1010": ["PJSIP/1010-0000000a"]},
        retire=True,
    )
    assert statuses(events) == [("1010", "on_call", True), ("1011", "offline", False)]
    retired = [e for e in events if isinstance(e, AgentRetired)]
    assert [r.endpoint for r in retired] == ["1099"]
    assert machine.get("1099") is None and machine.get("1012") is None
    assert [a.endpoint for a in machine.agents()] == ["1010", "1011"]
    # the seeded channel feeds the Hangup cross-check
    assert statuses(machine.channel_hungup("1010", "PJSIP/1010-0000000a")) == [("1010", "available", True)]
    # a retired endpoint that comes back continues its seq
    back = machine.device_state("1099", "UNAVAILABLE")
    assert back[0].seq == retired[0].seq + 1


def test_live_events_during_a_seed_win_over_the_listing() -> None:
    machine = PresenceMachine()
    registered(machine, "1010")
    machine.device_state("1010", "NOT_INUSE")
    token = machine.begin_seed()
    machine.device_state("1010", "RINGING")  # arrives while DeviceStateList runs
    machine.channel_created("1010", "PJSIP/1010-00000010")
    machine.channel_hungup("1010", "PJSIP/1010-0000000f")
    events = machine.apply_seed(
        token,
        device_states={"1010": "NOT_INUSE"},
        contacts={"1010": {"1010;@abc": "Reachable"}},
        channels={"1010": ["PJSIP/1010-0000000f"]},
        retire=True,
    )
    assert events == []  # the live RINGING stands; nothing retired
    assert machine.get("1010").state == "ringing"
    assert machine.channels_of("1010") == ["PJSIP/1010-00000010"]


def test_an_incomplete_seed_retires_nothing_and_an_aborted_one_changes_nothing() -> None:
    machine = PresenceMachine()
    registered(machine, "1010")
    token = machine.begin_seed()
    assert machine.apply_seed(token, device_states=None, contacts={"1010": {"c": "Reachable"}}) == []
    machine.begin_seed()
    machine.abort_seed()
    assert [a.endpoint for a in machine.agents()] == ["1010"]


def test_contacts_in_the_seed_replace_every_endpoint() -> None:
    machine = PresenceMachine()
    registered(machine, "1010")
    machine.device_state("1010", "NOT_INUSE")
    token = machine.begin_seed()
    events = machine.apply_seed(token, device_states={"1010": "NOT_INUSE"}, contacts={}, retire=True)
    assert statuses(events) == [("1010", "offline", False)]


def test_an_agent_known_only_by_its_contacts_goes_offline_when_they_go() -> None:
    machine = PresenceMachine()
    assert statuses(machine.set_contacts("2000", {"SIP/2000;@x": "Reachable"})) == [("2000", "unknown", True)]
    assert statuses(machine.set_contacts("2000", {})) == [("2000", "offline", False)]


def test_channels_alone_do_not_make_an_agent() -> None:
    machine = PresenceMachine()
    machine.channel_created("carrier", "PJSIP/carrier-00000001")
    assert machine.agents() == [] and machine.get("carrier") is None
    assert machine.channel_hungup("carrier", "PJSIP/carrier-00000001") == []


def test_a_retired_endpoint_gets_only_its_retirement() -> None:
    machine = PresenceMachine()
    registered(machine, "1098")
    machine.device_state("1098", "NOT_INUSE")
    token = machine.begin_seed()
    events = machine.apply_seed(token, device_states={}, contacts={}, retire=True)
    assert [(type(e).__name__, e.endpoint) for e in events] == [("AgentRetired", "1098")]


def test_a_seed_in_slices_yields_every_slice_and_live_facts_between_slices_win() -> None:
    """`seed_steps` does at most ``slice`` endpoints per step; between two steps (the event loop
    runs there) a live device state, a contact change and a hangup are all kept, not overwritten
    by the older snapshot."""
    machine = PresenceMachine()
    names = [str(1000 + n) for n in range(100)]
    contacts = {name: {f"{name};@abc": "Reachable"} for name in names}
    token = machine.begin_seed()
    machine.channel_created("1099", "PJSIP/1099-00000001")
    retirements: list = []
    updates: list[str] = []
    steps = machine.seed_steps(
        token, retirements, updates, device_states={name: "NOT_INUSE" for name in names},
        contacts_of=lambda e: contacts.get(e, {}), contact_endpoints=list(contacts),
        channels={"1099": ["PJSIP/1099-00000001", "PJSIP/1099-00000002"]}, retire=True,
        queues=None, custom=None, presence=None, slice=10)
    next(steps)  # the first slice of device states is applied, the rest is not
    assert machine.device_state_of("1000") == "NOT_INUSE" and machine.device_state_of("1050") is None
    machine.device_state("1050", "INUSE")  # live, between two slices
    contacts["1060"] = {"1060;@abc": "Unreachable"}  # the provider's index changed meanwhile
    machine.channel_hungup("1099", "PJSIP/1099-00000002")
    count = 1 + sum(1 for _ in steps)
    assert count >= 20  # 100 device states + 100 contacts, 10 per step
    assert updates == names and retirements == []
    events = machine.refresh(updates)
    states = {e.endpoint: (e.state, e.online) for e in events}
    assert states["1050"] == ("on_call", True)
    assert states["1060"] == ("offline", False)
    assert states["1000"] == ("available", True)
    assert machine.channels_of("1099") == ["PJSIP/1099-00000001"]


def test_an_endpoint_registering_after_its_seed_slice_is_not_retired() -> None:
    """Contacts that appear for an endpoint the seed's contacts step already passed are kept live
    (the provider notifies them); the seed's retirement check sees them, as it would have in a
    snapshot taken at its end."""
    machine = PresenceMachine()
    names = [str(1000 + n) for n in range(30)]
    contacts = {name: {f"{name};@abc": "Reachable"} for name in names}
    token = machine.begin_seed()
    retirements: list = []
    updates: list[str] = []
    steps = machine.seed_steps(
        token, retirements, updates, device_states={name: "NOT_INUSE" for name in names},
        contacts_of=lambda e: contacts.get(e, {}), contact_endpoints=list(contacts),
        channels=None, retire=True, queues=None, custom=None, presence=None, slice=10)
    for _ in range(4):  # device states done, the first slice of contacts done
        next(steps)
    contacts["2000"] = {"2000;@abc": "Reachable"}  # registers now: not in the device state listing
    machine.set_contacts("2000", contacts["2000"])  # the provider's batch, between two slices
    for _ in steps:
        pass
    assert retirements == []
    assert machine.get("2000") is not None and machine.get("2000").online
