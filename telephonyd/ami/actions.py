"""Builders and predicates for the actions the client itself sends (pure).

Facts (Asterisk 22.10.1 recordings 01/01b, main/manager.c):
- Plain login: ``Action: Login``, ``Username``, ``Secret``, ``Events``. MD5 login: ``Action:
  Challenge`` + ``AuthType: MD5`` answers ``Challenge: <n>``; then ``Login`` with ``AuthType: MD5``
  and ``Key: md5hex(challenge + secret)``. A bad secret: Asterisk waits 1 s, answers ``Response:
  Error`` / ``Message: Authentication failed`` and closes.
- ``Ping`` answers ``Response: Success`` / ``Ping: Pong``.
- An action Asterisk does not have answers ``Response: Error`` / ``Message: Invalid/unknown command:
  <Action>. Use Action: ListCommands to show available commands.`` (ami_actions_22.10.1.txt); the
  contacts listing tells it by its prefix (`telephonyd.contacts.listing.is_unknown_command`).
- List actions answer ``EventList: start``, one event per item, then ``<Name>Complete`` with
  ``EventList: Complete`` (compared case-insensitively).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .message import AMIMessage

#: Every action telephonyd sends to Asterisk. `AMIConnection.request` refuses any other name, so this
#: list cannot fall behind the code; each one has a real Asterisk's recorded reply in tests/fixtures
#: (checked by tests/unit/test_recorded_coverage.py). Add the recording with the action.
SENT_ACTIONS: frozenset[str] = frozenset({
    "Login", "Challenge", "Ping", "Logoff", "CoreSettings",                          # the client itself
    "PJSIPShowContacts", "PJSIPShowRegistrationInboundContactStatuses",             # contacts resync
    "SIPpeers", "IAXpeerlist", "PJSIPShowEndpoint",                                 # contacts resync/upkeep
    "DeviceStateList", "PJSIPShowEndpoints", "CoreShowChannels",                    # presence seed
    "QueueStatus", "PresenceStateList",                                             # presence seed
})  # fmt: skip


def check_sendable(fields: Mapping[str, Any]) -> str:
    """The action's name; raises ValueError when it is not in `SENT_ACTIONS` (compared exactly)."""
    name = str(fields.get("Action", ""))
    if name not in SENT_ACTIONS:
        raise ValueError(f"AMI action {name!r} is not in telephonyd.ami.actions.SENT_ACTIONS")
    return name


def login_plain(username: str, secret: str, events: str) -> dict[str, str]:
    return {"Action": "Login", "Username": username, "Secret": secret, "Events": events}


def challenge() -> dict[str, str]:
    return {"Action": "Challenge", "AuthType": "MD5"}


def md5_key(challenge_value: str, secret: str) -> str:
    """The ``Key`` of an MD5 login: md5 hex of the challenge followed by the secret."""
    return hashlib.md5((challenge_value + secret).encode("utf-8")).hexdigest()


def login_md5(username: str, key: str, events: str) -> dict[str, str]:
    return {"Action": "Login", "AuthType": "MD5", "Username": username, "Key": key, "Events": events}


def ping() -> dict[str, str]:
    return {"Action": "Ping"}


def logoff() -> dict[str, str]:
    return {"Action": "Logoff"}


def core_settings() -> dict[str, str]:
    return {"Action": "CoreSettings"}


def starts_list(reply: AMIMessage) -> bool:
    """True for a response that announces list items (``EventList: start``)."""
    return (reply.get("EventList") or "").lower() == "start"


def ends_list(message: AMIMessage) -> bool:
    """True for the ``...Complete`` event closing a list (``EventList: Complete``)."""
    return (message.get("EventList") or "").lower() == "complete"
