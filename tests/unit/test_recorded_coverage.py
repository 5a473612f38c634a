"""Every AMI action telephonyd can send has a real Asterisk's recorded reply in tests/fixtures.

The list comes from the code (`telephonyd.ami.actions.SENT_ACTIONS`, which `AMIConnection.request`
enforces), so an action added to the code without a recording fails here, before any fake could be
asked to invent its reply. The AGI side is in test_fastagi_fake.py (``SENT_COMMANDS``).
"""

from __future__ import annotations

import pytest

from telephonyd.ami.actions import SENT_ACTIONS, check_sendable
from tests.fakes.ami_replies import ReplyBook

BOOK = ReplyBook()


@pytest.mark.parametrize("action", sorted(SENT_ACTIONS))
def test_every_action_the_daemon_sends_has_a_recorded_reply(action: str) -> None:
    assert BOOK.has(action), f"no recorded reply of a real Asterisk to Action: {action}"
    assert BOOK.replies(action)[0].reply.startswith(b"Response: ")


def test_the_code_cannot_send_an_undeclared_action() -> None:
    assert check_sendable({"Action": "PJSIPShowContacts"}) == "PJSIPShowContacts"
    with pytest.raises(ValueError):
        check_sendable({"Action": "Originate"})
    with pytest.raises(ValueError):
        check_sendable({"Action": "pjsipshowcontacts"})  # exact spelling, as declared
