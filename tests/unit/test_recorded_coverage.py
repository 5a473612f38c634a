"""Every AMI action telephonyd can send has a real Asterisk's recorded reply in tests/fixtures.

The list comes from the code (`telephonyd.ami.actions.SENT_ACTIONS`, which `AMIConnection.request`
enforces), so an action added to the code without a recording fails here, before any fake could be
asked to invent its reply. The AGI side is in test_fastagi_fake.py (``SENT_COMMANDS``).
"""

from __future__ import annotations

import pytest

from telephonyd.ami.actions import SENT_ACTIONS, check_sendable
from tests.conftest import ASTERISK_VERSIONS
from tests.fakes.ami_replies import ReplyBook

BOOKS = {version: ReplyBook(version=version) for version in ASTERISK_VERSIONS}


@pytest.mark.parametrize("version", ASTERISK_VERSIONS)
@pytest.mark.parametrize("action", sorted(SENT_ACTIONS))
def test_every_action_the_daemon_sends_has_a_recorded_reply(action: str, version: str) -> None:
    """On every recorded version (22.10.1, and 20.20.1 with chan_sip): none is skipped for 20."""
    book = BOOKS[version]
    assert book.has(action), f"no recorded reply of Asterisk {version} to Action: {action}"
    assert book.replies(action)[0].reply.startswith(b"Response: ")


def test_sippeers_is_a_list_on_20_and_unknown_on_22() -> None:
    assert b"Invalid/unknown command: SIPpeers." in BOOKS["22.10.1"].reply("SIPpeers")
    listing = BOOKS["20.20.1"].listing("SIPpeers")
    assert set(listing.items) == {"peerentry"} and b"PeerlistComplete" in listing.complete


def test_a_version_never_recorded_is_refused() -> None:
    with pytest.raises(ValueError, match="18.0.0"):
        ReplyBook(version="18.0.0")


def test_the_code_cannot_send_an_undeclared_action() -> None:
    assert check_sendable({"Action": "PJSIPShowContacts"}) == "PJSIPShowContacts"
    with pytest.raises(ValueError):
        check_sendable({"Action": "Originate"})
    with pytest.raises(ValueError):
        check_sendable({"Action": "pjsipshowcontacts"})  # exact spelling, as declared
