"""The AMI framing parser on every recorded Asterisk 22.10.1 byte stream, split at every offset."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telephonyd.ami.errors import LimitExceeded, ProtocolError
from telephonyd.ami.framing import (
    check_banner,
    encode_action,
    parse_messages,
    split_banner,
)
from tests.fakes.ami_wire import (
    AMI_RECORDINGS,
    VICIDIAL_RECORDINGS,
    action_transcript,
    received_stream,
    split_raw,
)

ANNOTATED = ["01_ami_banner_login.txt", "01b_ami_login_bad_secret.txt", "03_PJSIPShowContacts_registered.txt"]
#: ``>>> ``-annotated sessions: the replies, concatenated, are the stream.
ACTIONS = ["ami_actions_22.10.1.txt"]
RAW = sorted(p.name for p in AMI_RECORDINGS.glob("*.txt") if p.name not in ANNOTATED + ACTIONS)
VICIDIAL_RAW = sorted(p.name for p in VICIDIAL_RECORDINGS.glob("*_ami_events.txt"))


def stream_of(name: str) -> tuple[bytes, str | None]:
    """(bytes after the banner, banner) for a recording."""
    if name in ANNOTATED:
        data = received_stream(AMI_RECORDINGS / name)
        banner, rest = split_banner(data)
        return rest, banner
    if name in ACTIONS:
        return b"".join(a.reply for a in action_transcript(AMI_RECORDINGS / name)), None
    path = AMI_RECORDINGS / name if (AMI_RECORDINGS / name).exists() else VICIDIAL_RECORDINGS / name
    return path.read_bytes(), None


ALL = ANNOTATED + ACTIONS + RAW + VICIDIAL_RAW


def as_pairs(messages) -> list[list[tuple[str, str]]]:  # type: ignore[no-untyped-def]
    return [m.pairs for m in messages]


def feed(chunks: list[bytes]) -> tuple[list, bytes]:  # type: ignore[type-arg]
    out = []
    rest = b""
    for chunk in chunks:
        messages, rest = parse_messages(rest + chunk)
        out.extend(messages)
    return out, rest


def test_every_recording_is_covered() -> None:
    assert len(RAW) >= 7 and len(VICIDIAL_RAW) >= 5
    assert "05b_originate_local_agi_ami_events_all.txt" in RAW


@pytest.mark.parametrize("name", ALL)
def test_recording_parses_like_an_independent_reading(name: str) -> None:
    data, banner = stream_of(name)
    messages, rest = parse_messages(data)
    assert rest == b""
    assert as_pairs(messages) == split_raw(data)
    assert sum(1 for m in messages if m.event) == data.count(b"\nEvent: ") + data.startswith(b"Event: ")
    if banner is not None:
        assert check_banner(banner) == "11.0.0"


@pytest.mark.parametrize("name", ALL)
def test_recording_split_at_every_offset_byte_by_byte(name: str) -> None:
    """Every offset is a read boundary: the unconsumed bytes carry over and nothing changes."""
    data, _ = stream_of(name)
    expected = as_pairs(parse_messages(data)[0])
    messages, rest = feed([data[i : i + 1] for i in range(len(data))])
    assert rest == b""
    assert as_pairs(messages) == expected


def _offsets(data: bytes) -> list[int]:
    if len(data) <= 4096:
        return list(range(len(data) + 1))
    interesting = set(range(700)) | set(range(0, len(data) + 1, 131))
    start = 0
    while (end := data.find(b"\r\n\r\n", start)) >= 0:
        interesting.update(range(max(0, end - 3), min(len(data), end + 6)))
        start = end + 4
    return sorted(interesting)


@pytest.mark.parametrize("name", ALL)
def test_recording_split_in_two(name: str) -> None:
    data, _ = stream_of(name)
    expected = as_pairs(parse_messages(data)[0])
    for offset in _offsets(data):
        messages, rest = feed([data[:offset], data[offset:]])
        assert rest == b"" and as_pairs(messages) == expected, offset


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=18480), max_size=40))
def test_random_chunkings_of_a_call(cuts: list[int]) -> None:
    data = (AMI_RECORDINGS / "06b_sip_call_agi_ami_events_all.txt").read_bytes()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    messages, rest = feed(chunks)
    assert rest == b""
    assert as_pairs(messages) == split_raw(data)


def test_stray_lf_before_the_blank_line_is_not_an_extra_message() -> None:
    data = b"Response: Error\r\nActionID: a-1\r\nMessage: No Contacts found\n\r\n\r\nEvent: Ping\r\n\r\n"
    messages, rest = parse_messages(data)
    assert rest == b""
    assert [m.pairs for m in messages] == [
        [("Response", "Error"), ("ActionID", "a-1"), ("Message", "No Contacts found")],
        [("Event", "Ping")],
    ]


def test_unconsumed_bytes_are_returned_untouched() -> None:
    messages, rest = parse_messages(b"Event: A\r\n\r\nEvent: B\r\nKey: partial va")
    assert [m.event for m in messages] == ["A"]
    assert rest == b"Event: B\r\nKey: partial va"
    messages, rest = parse_messages(rest + b"lue\r\n\r")
    assert messages == [] and rest.endswith(b"\r")
    messages, rest = parse_messages(rest + b"\n")
    assert messages[0].get("key") == "partial value" and rest == b""


def test_values_keys_and_repeats() -> None:
    data = (b"Event: Newexten\r\nRegServer: \r\nAppData: Dial(PJSIP/1010): extra\r\nVariable: a=1\r\n"
            b"variable: b=2\r\nEmpty:\r\nOdd:x\r\n\r\n")
    (message,), _ = parse_messages(data)
    assert message.get("RegServer") == ""
    assert message.get("appdata") == "Dial(PJSIP/1010): extra"
    assert message.get_all("VARIABLE") == ["a=1", "b=2"]
    assert message.get("Empty") == "" and message.get("Odd") == "x"


def test_lf_only_lines_and_empty_messages() -> None:
    messages, rest = parse_messages(b"\r\n\r\nEvent: A\nX: 1\n\n\r\n\nEvent: B\r\n\r\n")
    assert [m.event for m in messages] == ["A", "B"] and rest == b""


def test_banner_prefix_only_and_across_reads() -> None:
    banner, rest = split_banner(b"Asterisk Call Man")
    assert banner is None and rest == b"Asterisk Call Man"
    banner, rest = split_banner(rest + b"ager/2.10.6\r\nResponse: Success\r\n")
    assert check_banner(banner or "") == "2.10.6"
    assert rest == b"Response: Success\r\n"
    with pytest.raises(ProtocolError):
        check_banner("SSH-2.0-OpenSSH_9.2")
    with pytest.raises(LimitExceeded):
        split_banner(b"x" * 300, max_line_bytes=256)


def test_oversized_lines_and_messages_are_refused_complete_or_not() -> None:
    with pytest.raises(LimitExceeded):
        parse_messages(b"Event: A\r\nData: " + b"x" * 600 + b"\r\n\r\n", max_line_bytes=512)
    with pytest.raises(LimitExceeded):  # still arriving, no line end yet
        parse_messages(b"Event: A\r\nData: " + b"x" * 600, max_line_bytes=512)
    many = b"".join(b"K%d: value\r\n" % i for i in range(200))
    with pytest.raises(LimitExceeded):
        parse_messages(b"Event: A\r\n" + many + b"\r\n", max_message_bytes=1024)
    with pytest.raises(LimitExceeded):
        parse_messages(b"Event: A\r\n" + many, max_message_bytes=1024)
    messages, _ = parse_messages(b"Event: A\r\nData: " + b"x" * 400 + b"\r\n\r\n", max_line_bytes=512)
    assert len(messages[0].get("Data") or "") == 400


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\xfe this is not AMI\r\n\r\n",
    b"Event: A\r\nno colon on this line\r\n\r\n",
    b": value without a key\r\n\r\n",
    b"Ev\x07ent: A\r\n\r\n",
])
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_messages(garbage)


def test_command_output_of_old_asterisk_is_kept() -> None:
    data = b"Response: Follows\r\nPrivilege: Command\r\nName/username   Host\r\n--END COMMAND--\r\n\r\n"
    (message,), _ = parse_messages(data)
    assert message.get_all("Output") == ["Name/username   Host", "--END COMMAND--"]


def test_encode_action_round_trips_and_refuses_injection() -> None:
    data = encode_action({"Action": "Originate", "Variable": ["a=1", "b=2"], "Skip": None, "Timeout": 30})
    assert data == b"Action: Originate\r\nVariable: a=1\r\nVariable: b=2\r\nTimeout: 30\r\n\r\n"
    (message,), rest = parse_messages(data)
    assert message.get_all("variable") == ["a=1", "b=2"] and rest == b""
    with pytest.raises(ValueError):
        encode_action({"Action": "Ping", "ActionID": "x\r\n\r\nAction: Originate"})
    with pytest.raises(ValueError):
        encode_action({"Action": "Ping\nEvil: 1"})


def test_malformed_message_is_reported_and_skipped_when_asked() -> None:
    skipped: list[str] = []
    data = (b"Event: A\r\n\r\nEvent: B\r\nno colon on this line\r\n\r\n"
            b"Ev\x07ent: C\r\n\r\nEvent: D\r\n\r\n")
    messages, rest = parse_messages(data, on_malformed=lambda block, _exc: skipped.append(block.split("\n")[0].rstrip("\r")))
    assert [m.event for m in messages] == ["A", "D"] and rest == b""
    assert skipped == ["Event: B", "Ev\x07ent: C"]
