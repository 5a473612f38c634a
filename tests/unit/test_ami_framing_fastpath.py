"""The framing's whole-buffer fast path against its line-by-line reference parser (``fast=False``):
the same messages (pairs, event, ActionID, lookups), the same unconsumed bytes, the same errors and
the same blocks reported malformed, on generated input and on every recorded stream."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephonyd.ami.errors import LimitExceeded, ProtocolError
from telephonyd.ami.framing import parse_messages
from tests.unit.test_ami_framing import ALL, stream_of

LIMITS = {"max_line_bytes": 256, "max_message_bytes": 1024}

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY = st.builds(str.__add__, st.sampled_from(_LETTERS + ":- \x01\x7f\x85é"),
                st.text(_LETTERS + "0123456789_-: \x00\x1f\u2028", max_size=12))
VALUE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
LINE = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}", KEY, VALUE),
    st.builds(lambda k, v: f"{k}:{v}", KEY, VALUE),
    st.sampled_from(["Event: ContactStatus", "event: Lower", "Response: Follows", "--END COMMAND--", "ActionID: t-1",
                     "actionid: t-2", "", "\r", ": empty key", ":a: b", "Key: ", "Key:", "no colon", "Event: "]),
)
SEP = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n", "\r\n\r\n", "\r\n\r\n", "\n\n", "\n\r\n"])


def outcome(data: bytes, *, fast: bool, **limits: int) -> tuple[object, ...]:
    """What a caller sees: the messages as every accessor reads them (the event first, as the read
    loop does, before anything builds the pairs), the unconsumed bytes, the error, the skipped blocks."""
    skipped: list[str] = []
    try:
        messages, rest = parse_messages(data, fast=fast, on_malformed=lambda block, _exc: skipped.append(block),
                                        **limits)
    except (LimitExceeded, ProtocolError) as exc:
        return type(exc), str(exc), skipped
    seen = [(m.event, m.action_id, m.pairs, m.get("Event"), m.to_dict(), m.response, len(m)) for m in messages]
    return seen, rest, skipped


def same_either_way(data: bytes, **limits: int) -> None:
    fast = outcome(data, fast=True, **limits)
    assert fast == outcome(data, fast=False, **limits)
    if not isinstance(fast[0], list):
        return
    whole = [seen[2] for seen in fast[0]]
    # Split, fed as the read loop feeds it (each part may take either path): the same messages.
    for cut in (len(data) // 3, len(data) // 2, len(data) - 1):
        messages: list[object] = []
        skipped: list[str] = []
        rest = b""
        try:
            for chunk in (data[:cut], data[cut:]):
                parsed, rest = parse_messages(rest + chunk, on_malformed=lambda block, _e: skipped.append(block),
                                              **limits)
                messages.extend(m.pairs for m in parsed)
        except (LimitExceeded, ProtocolError):
            continue
        if not skipped and not fast[2]:  # (a key such as "\x85" passes whole lines, not the line-by-line check)
            assert messages == whole


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINE, max_size=30), seps=st.lists(SEP, min_size=30, max_size=30))
def test_generated_text_parses_the_same_on_both_paths(lines: list[str], seps: list[str]) -> None:
    data = "".join(line + sep for line, sep in zip(lines, seps)).encode("utf-8", "surrogatepass")
    same_either_way(data, **LIMITS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.lists(st.tuples(KEY, VALUE.filter(lambda v: "\r" not in v and "\n" not in v)),
                                  min_size=1, max_size=10), max_size=8),
       blanks=st.lists(st.integers(1, 3), min_size=8, max_size=8))
def test_well_formed_crlf_messages_parse_the_same_on_both_paths(messages: list, blanks: list[int]) -> None:
    """What Asterisk sends: the fast path's own ground, empty messages between included."""
    data = "".join("".join(f"{k}: {v}\r\n" for k, v in m) + "\r\n" * b for m, b in zip(messages, blanks)).encode()
    same_either_way(data, **LIMITS)


@pytest.mark.parametrize("limits", [{"max_line_bytes": 16 * 1024, "max_message_bytes": 256 * 1024},
                                    {"max_line_bytes": 80, "max_message_bytes": 100_000},
                                    {"max_line_bytes": 16 * 1024, "max_message_bytes": 300}])
@pytest.mark.parametrize("name", ALL)
def test_recordings_parse_the_same_on_both_paths(name: str, limits: dict[str, int]) -> None:
    data, _ = stream_of(name)
    same_either_way(data, **limits)


@pytest.mark.parametrize("size", [255, 256, 257])
def test_limits_at_the_edge_are_the_same_on_both_paths(size: int) -> None:
    """A block at exactly the line or message limit (the reference counts the CR of its terminator)."""
    for block in ("Event: A\r\nData: " + "x" * (size - 16), "Data: " + "y" * (size - 6)):
        data = (block + "\r\n\r\nEvent: B\r\n\r\n").encode()
        for limits in ({"max_line_bytes": size, "max_message_bytes": 4096},
                       {"max_line_bytes": 4096, "max_message_bytes": size},
                       {"max_line_bytes": size - 1, "max_message_bytes": size + 1}):
            same_either_way(data, **limits)


def test_a_malformed_block_is_skipped_alike() -> None:
    data = b"Event: A\r\nX: 1\r\n\r\nEvent: B\r\ngarbage line\r\n\r\nEvent: C\r\n\r\n"
    fast = outcome(data, fast=True)
    assert fast == outcome(data, fast=False)
    seen, rest, skipped = fast
    assert [m[0] for m in seen] == ["A", "C"] and skipped == ["Event: B\r\ngarbage line\r"]  # type: ignore[union-attr]


@pytest.mark.parametrize("odd", [": empty key", ":a: b", "Key:", "no colon", "K\x01y: v", "Key: a\rb", "\x85: v",
                                 "Response: Follows", "--END COMMAND--", " Key: v", "Key:: v", "Key: v\n"])
def test_one_odd_line_in_clean_crlf_text_is_taken_alike(odd: str) -> None:
    """Every line shape the fast path must leave to the reference parser, alone among clean lines."""
    for at in range(3):
        lines = ["Event: A", "X: 1", "Y: 2"]
        lines.insert(at, odd)
        data = ("Event: Before\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\nEvent: After\r\n\r\n").encode()
        same_either_way(data)
