"""Queue pause, Do Not Disturb and away over a real AMI socket: the fake answers QueueStatus,
PresenceStateList and DeviceStateList (Custom: devices) and emits QueueMemberPause,
PresenceStateChange and DeviceStateChange from Asterisk 22.10.1 lab recordings (app_queue loaded,
and not loaded)."""

from __future__ import annotations

from telephonyd.presence.state import AgentStatus
from tests.component.presence_rig import eventually, presence_rig
from tests.fakes.ami import FakeAMIServer


def agents_in_sales(ami: FakeAMIServer) -> None:
    for name in ("1010", "1011", "1012"):
        ami.add_endpoint(name)
    ami.queues = {"sales": {"PJSIP/1010": (False, ""), "PJSIP/1011": (False, ""), "PJSIP/1012": (False, "")},
                  "support": {"PJSIP/1011": (False, "")}}


def reason(rig, endpoint: str) -> str | None:
    status = rig.presence.agent(endpoint)
    return None if status is None else status.reason


async def test_paused_in_every_queue_is_paused_with_its_reason(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=agents_in_sales) as rig:
        for name in ("1010", "1011"):
            rig.ami.register(name)
        await eventually(lambda: rig.agent("1010") == rig.agent("1011") == ("available", True))

        rig.ami.queue_pause("PJSIP/1010", True, "Lunch break", queue="sales")
        await eventually(lambda: rig.agent("1010") == ("paused", True) and reason(rig, "1010") == "Lunch break")

        rig.ami.queue_pause("PJSIP/1011", True, "Training", queue="sales")  # still free in support
        await eventually(lambda: rig.presence.machine.availability_of("1011")["queues"]["sales"]["paused"])
        assert rig.agent("1011") == ("available", True)
        rig.ami.queue_pause("PJSIP/1011", True, "Training")  # every queue
        await eventually(lambda: rig.agent("1011") == ("paused", True) and reason(rig, "1011") == "Training")

        rig.ami.queue_pause("PJSIP/1010", False)
        await eventually(lambda: rig.agent("1010") == ("available", True) and reason(rig, "1010") is None)
        status, body = await rig.api("GET", "/api/ami/extensions/1011")
        assert status == 200 and body["extension"]["state"] == "paused" and body["extension"]["reason"] == "Training"
        assert body["extension"]["availability"]["queues"]["support"] == {"paused": True, "reason": "Training"}


async def test_pauses_and_dnd_known_before_connecting_come_from_the_seed(sqlite_url) -> None:
    def setup(ami: FakeAMIServer) -> None:
        agents_in_sales(ami)
        ami.queues = {"sales": {"PJSIP/1010": (True, "Meeting"), "PJSIP/1011": (False, "")}}
        ami.presence = {"CustomPresence:1011": ("away", "Lunch", "back at 2")}
        ami.custom_devices = {"Custom:DND1012": "BUSY"}

    async with presence_rig(sqlite_url, setup=setup) as rig:
        for name in ("1010", "1011", "1012"):
            rig.ami.register(name)
        await eventually(lambda: rig.agent("1010") == ("paused", True) and reason(rig, "1010") == "Meeting")
        await eventually(lambda: rig.agent("1011") == ("away", True) and reason(rig, "1011") == "Lunch - back at 2")
        await eventually(lambda: rig.agent("1012") == ("dnd", True))
        assert {"QueueStatus", "PresenceStateList"} <= {dict(a)["Action"] for a in rig.ami.actions}


async def test_dnd_from_custom_device_and_presence_state_over_a_call(sqlite_url) -> None:
    async with presence_rig(sqlite_url, setup=agents_in_sales) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        rig.ami.set_custom_device("Custom:DND1010", "BUSY")
        await eventually(lambda: rig.agent("1010") == ("dnd", True))
        rig.ami.set_device_state("1010", "INUSE")  # a call shows over DND
        await eventually(lambda: rig.agent("1010") == ("on_call", True))
        rig.ami.set_device_state("1010", "NOT_INUSE")
        await eventually(lambda: rig.agent("1010") == ("dnd", True))
        rig.ami.set_custom_device("Custom:DND1010", "NOT_INUSE")
        await eventually(lambda: rig.agent("1010") == ("available", True))

        rig.ami.set_presence("CustomPresence:1010", "dnd")
        await eventually(lambda: rig.agent("1010") == ("dnd", True))
        rig.ami.set_presence("CustomPresence:1010", "xa", "Holiday", "")
        await eventually(lambda: rig.agent("1010") == ("away", True) and reason(rig, "1010") == "Holiday")
        rig.ami.queue_pause("PJSIP/1010", True, "Coffee")  # paused ranks above away
        await eventually(lambda: rig.agent("1010") == ("paused", True))
        rig.ami.set_presence("CustomPresence:1010", "available")
        rig.ami.queue_pause("PJSIP/1010", False)
        await eventually(lambda: rig.agent("1010") == ("available", True))
        states = [e.state for e in rig.events if isinstance(e, AgentStatus) and e.endpoint == "1010"]
        assert states[-9:] == ["available", "dnd", "on_call", "dnd", "available", "dnd", "away", "paused", "available"]


async def test_without_app_queue_the_seed_still_completes(sqlite_url) -> None:
    def setup(ami: FakeAMIServer) -> None:
        ami.add_endpoint("1010")
        ami.queues = None  # QueueStatus answers Invalid/unknown command (recorded with app_queue unloaded)

    async with presence_rig(sqlite_url, setup=setup) as rig:
        rig.ami.register("1010")
        await eventually(lambda: rig.agent("1010") == ("available", True))
        assert rig.presence.last_seed_error is None and rig.presence.seeded
        assert "QueueStatus" in {dict(a)["Action"] for a in rig.ami.actions}
