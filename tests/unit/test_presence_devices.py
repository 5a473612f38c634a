"""Device, channel and peer names to endpoints; device state texts."""

from __future__ import annotations

import pytest

from telephonyd.presence.devices import (
    EndpointFilter,
    normalize_device_state,
    split_channel,
)


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("PJSIP/1010-00000003", ("PJSIP", "1010")),
        ("SIP/1010-0000000a", ("SIP", "1010")),
        ("IAX2/1010-1234", ("IAX2", "1010")),
        ("PJSIP/agent-1010-00000003", ("PJSIP", "agent-1010")),
        ("PJSIP/1010-00000003<ZOMBIE>", ("PJSIP", "1010")),
        ("PJSIP/1010", (None, "")),
        ("garbage", (None, "")),
        ("", (None, "")),
        (None, (None, "")),
    ],
)
def test_split_channel(channel, expected) -> None:
    assert split_channel(channel) == expected


def test_filter_keeps_agent_technologies_only() -> None:
    f = EndpointFilter.build()
    assert f.device_endpoint("PJSIP/1010") == "1010"
    assert f.device_endpoint("SIP/2000") == "2000"
    assert f.device_endpoint("IAX2/3000") == "3000"
    assert f.device_endpoint("Local/s@agitest") is None
    assert f.device_endpoint("Queue:support_avail") is None
    assert f.channel_endpoint("Local/s@agitest-00000000;1") is None
    assert f.channel_endpoint("PJSIP/1010-00000000") == "1010"


def test_filter_pattern_leaves_trunks_out() -> None:
    f = EndpointFilter.build(["pjsip"], r"[0-9]{3,6}")
    assert f.device_endpoint("PJSIP/1010") == "1010"
    assert f.device_endpoint("PJSIP/carrier") is None
    assert f.channel_endpoint("PJSIP/carrier-0000000b") is None
    assert f.device_endpoint("SIP/1010") is None
    assert f.accepts("PJSIP", "10101") and not f.accepts("PJSIP", "1010x")


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("NOT_INUSE", "NOT_INUSE"),
        ("Not in use", "NOT_INUSE"),
        ("In use", "INUSE"),
        ("Busy", "BUSY"),
        ("Invalid", "INVALID"),
        ("Unavailable", "UNAVAILABLE"),
        ("Ringing", "RINGING"),
        ("Ring+Inuse", "RINGINUSE"),
        ("On Hold", "ONHOLD"),
        ("On HoldONHOLD", "ONHOLD"),
        ("Unknown", "UNKNOWN"),
        ("ringinuse", "RINGINUSE"),
        ("Sleeping", None),
        (None, None),
    ],
)
def test_device_state_texts(value, state) -> None:
    assert normalize_device_state(value) == state
