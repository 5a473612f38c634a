"""Asking Asterisk for its contacts over AMI (list actions; no database).

Which action lists contacts depends on the version, so it is chosen by what the server answers:
``PJSIPShowContacts`` (16+), else ``PJSIPShowRegistrationInboundContactStatuses`` (13.14-15.x)
when the first is not available; if neither is, res_pjsip is not loaded and PJSIP contacts are left
alone. chan_sip (``SIPpeers``, Asterisk <= 20) and IAX2 (``IAXpeerlist``) registered peers are listed
the same way in owned mode. An ``Error`` saying nothing was found (``No Contacts found``) is an empty
list; any other error fails the listing.

"Not available" is what Asterisk 22.10.1 answers for an action no loaded module registers
(main/manager.c; recorded for ``SIPpeers``, ``IAXpeerlist``, ``QueueStatus`` and an unknown action in
tests/fixtures/asterisk-22.10.1/ami/ami_actions_22.10.1.txt)::

    Response: Error
    Message: Invalid/unknown command: SIPpeers. Use Action: ListCommands to show available commands.

so it is matched on its ``Invalid/unknown command`` prefix, never on the whole text.
"""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import TelephonydError
from ..heap import keep_long_lived, take_slices
from .model import Contact
from .parse import (
    MessageLike,
    contact_from_list_item,
    contact_from_peer_entry,
    contact_from_status_detail,
)

#: The start of Asterisk's answer to an action it does not have (compared case-insensitively).
UNKNOWN_COMMAND_PREFIX = "invalid/unknown command"


class AMISource(Protocol):
    """What the contacts sync needs from the AMI client (telephonyd.ami.AMIClient fits)."""

    @property
    def connected(self) -> bool: ...

    def subscribe(self, pattern: str, callback: Callable[[Any], None]) -> Callable[[], None]: ...

    def on_connect(self, callback: Callable[[Any], Awaitable[None]]) -> Callable[[], None]: ...

    async def list_action(self, fields: Mapping[str, Any], *, timeout: float | None = None) -> tuple[Any, list[Any]]: ...


class ListingFailed(TelephonydError):
    """Asterisk answered a contact listing with an error other than "nothing found"."""

    retryable = True


@dataclass
class Listing:
    """Contacts by id, the technologies the listing covers, and each one's snapshot position."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)  # tech -> seq of the list reply
    sources: list[str] = field(default_factory=list)

    @property
    def scopes(self) -> set[str]:
        return set(self.seqs)


def is_unknown_command(reply: MessageLike) -> bool:
    """True when Asterisk does not have the action (module not loaded, older or newer version)."""
    return _is_error(reply) and (reply.get("Message") or "").strip().lower().startswith(UNKNOWN_COMMAND_PREFIX)


def found_nothing(reply: MessageLike) -> bool:
    """``No Contacts found`` and the like: an error that means an empty list."""
    message = (reply.get("Message") or "").strip().lower()
    return message.startswith("no ") and message.endswith("found")


#: List items parsed between two yields to the event loop (about 10 ms on an idle core).
PARSE_SLICE = 500


def _is_error(reply: MessageLike) -> bool:
    return (reply.get("Response") or "").lower() == "error"


async def list_pjsip(ami: AMISource, listing: Listing, *, reg_server: str | None) -> None:
    """Add res_pjsip's contacts to ``listing`` (nothing when res_pjsip is not loaded)."""
    reply, items = await ami.list_action({"Action": "PJSIPShowContacts"})
    parse = contact_from_list_item
    source = "PJSIPShowContacts"
    if is_unknown_command(reply):
        reply, items = await ami.list_action({"Action": "PJSIPShowRegistrationInboundContactStatuses"})
        parse = contact_from_status_detail
        source = "PJSIPShowRegistrationInboundContactStatuses"
        if is_unknown_command(reply):
            return
    if _is_error(reply) and not found_nothing(reply):
        raise ListingFailed(f"{source}: {reply.get('Message') or 'error'}")
    for index, part in enumerate(take_slices(items, PARSE_SLICE)):  # each slice freed after use
        if index:
            keep_long_lived()  # the listed contacts become the table (see `heap`)
            await asyncio.sleep(0)  # 50,000 items take about a second: let the event loop run between slices
        for item in part:
            contact = parse(item, reg_server=reg_server)
            if contact is not None:
                listing.contacts[contact.id] = contact
    listing.seqs["PJSIP"] = reply.seq
    listing.sources.append(source)


async def list_peers(ami: AMISource, listing: Listing, *, reg_server: str | None) -> None:
    """Add registered chan_sip and IAX2 peers (each technology only if its module answers)."""
    for action, tech in (("SIPpeers", "SIP"), ("IAXpeerlist", "IAX2")):
        reply, items = await ami.list_action({"Action": action})
        if is_unknown_command(reply):
            continue
        if _is_error(reply) and not found_nothing(reply):
            raise ListingFailed(f"{action}: {reply.get('Message') or 'error'}")
        for item in items:
            contact = contact_from_peer_entry(item, tech=tech, reg_server=reg_server)
            if contact is not None:
                listing.contacts[contact.id] = contact
        listing.seqs[tech] = reply.seq
        listing.sources.append(action)


async def list_endpoint(ami: AMISource, endpoint: str, *, reg_server: str | None) -> tuple[int, dict[str, Contact]] | None:
    """The contacts of one endpoint (PJSIPShowEndpoint's ContactStatusDetail items) and the reply's seq.

    None when Asterisk answers an error (unknown endpoint): nothing can be concluded.
    """
    reply, items = await ami.list_action({"Action": "PJSIPShowEndpoint", "Endpoint": endpoint})
    if _is_error(reply):
        return None
    contacts: dict[str, Contact] = {}
    for item in items:
        if (item.get("Event") or "").lower() != "contactstatusdetail":
            continue
        contact = contact_from_status_detail(item, reg_server=reg_server)
        if contact is not None:
            contacts[contact.id] = contact.replace(endpoint=contact.endpoint or endpoint)
    return reply.seq, contacts
