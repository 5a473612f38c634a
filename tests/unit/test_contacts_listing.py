"""Which AMI replies the contacts listing reads as "action not available", on Asterisk's real text."""

from __future__ import annotations

import pytest

from telephonyd.ami.framing import parse_messages
from telephonyd.contacts.listing import found_nothing, is_unknown_command
from tests.fakes.ami_wire import AMI_RECORDINGS, action_transcript, transcript_blocks

ACTIONS = {(a.name, a.sent[-1][1]): a for a in action_transcript(AMI_RECORDINGS / "ami_actions_22.10.1.txt")}


def reply_of(name: str, last_value: str | None = None):  # type: ignore[no-untyped-def]
    action = next(a for (n, v), a in ACTIONS.items() if n == name and (last_value is None or v == last_value))
    messages, rest = parse_messages(action.reply)
    assert rest == b""
    return messages[0]


@pytest.mark.parametrize("action", ["SIPpeers", "IAXpeerlist", "QueueStatus", "QueueSummary", "NoSuchAction"])
def test_asterisk_22_unknown_action_text_is_not_available(action: str) -> None:
    reply = reply_of(action)
    assert reply.get("Message", "").startswith(f"Invalid/unknown command: {action}. Use Action: ListCommands")
    assert is_unknown_command(reply)
    assert not found_nothing(reply)


@pytest.mark.parametrize("action", ["PJSIPShowContacts", "PJSIPShowEndpoints", "CoreShowChannels", "Ping"])
def test_answered_actions_are_available(action: str) -> None:
    assert not is_unknown_command(reply_of(action))


def test_an_unknown_endpoint_is_an_error_but_not_a_missing_action() -> None:
    reply = reply_of("PJSIPShowEndpoint", "nosuch")
    assert reply.get("Message") == "Unable to retrieve endpoint nosuch"
    assert not is_unknown_command(reply) and not found_nothing(reply)


def test_no_contacts_found_is_an_empty_list() -> None:
    blocks = transcript_blocks(AMI_RECORDINGS / "01_ami_banner_login.txt")
    raw = next(data for direction, data in blocks if direction == "received" and b"No Contacts found" in data)
    reply = parse_messages(raw)[0][0]
    assert found_nothing(reply) and not is_unknown_command(reply)
