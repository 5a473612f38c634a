"""A fake Asterisk manager (AMI) on a real loopback socket, replaying what Asterisk 22.10.1 sends.

It holds endpoints and contacts it can change, producing the recorded event orders:
- register: ContactStatus NonQualified -> PeerStatus Reachable -> ContactStatus Reachable
  (-> DeviceStateChange NOT_INUSE), 02_register_ami_events_all.txt;
- unregister: PeerStatus Unreachable -> DeviceStateChange UNAVAILABLE -> ContactStatus Removed.
Every reply to an action is one a real Asterisk 22.10.1 gave (`tests.fakes.ami_replies`): Login,
Ping, Logoff, CoreSettings, PJSIPShowContacts, PJSIPShowRegistrationInboundContactStatuses,
PJSIPShowEndpoints, PJSIPShowEndpoint, DeviceStateList and CoreShowChannels are filled from the
fake's state on the recorded templates; SIPpeers, IAXpeerlist (not loaded on 22) and the other
recorded actions get their recorded reply. Anything else raises `UnrecordedAction`: the connection
is closed and `stop` (the ``async with`` exit) raises it in the test. Faults: drop connections,
Shutdown then come back with FullyBooted, reject logins (wait, Error, close), garbage, oversized
lines, silence. ``ssl=`` listens with TLS (AMI over TLS, recorded in tests/fixtures/asterisk-22.10.1/ami/tls).

``version="20.20.1"`` answers and sends only what Asterisk 20.20.1 was recorded saying
(tests/fixtures/asterisk-20.20.1, chan_sip enabled): its banner, replies and event templates, plus
chan_sip peers (`tests.fakes.ami_sip`) listed by SIPpeers; an action or event with no 20.20.1
recording fails the test the same way.

Usage::

    async with FakeAMIServer(secret="s3cret") as ami:
        ami.add_endpoint("1010")
        ami.register("1010")
        config = AMIConfig(enabled=True, port=ami.port, secret="s3cret", ...)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import ssl as _ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

from tests.conftest import ASTERISK_VERSIONS
from tests.fakes.ami_replies import ReplyBook, UnrecordedAction, fill, frame, messages
from tests.fakes.ami_sip import FakeSipPeer, SipPeers
from tests.fakes.ami_wire import AMI_RECORDINGS as RECORDINGS
from tests.fakes.ami_wire import (
    FakeContact,
    Pairs,
    Recordings,
    banner,
    channel_event,
    contact_id,
    device_state_change,
    encode,
    fully_booted,
    peer_status,
    presence_state_change,
    queue_member_event,
    recorded_events,
    split_raw,
    value_of,
)

__all__ = ["RECORDINGS", "FakeAMIServer", "UnrecordedAction", "FakeContact", "FakeEndpoint", "FakeSipPeer", "channel_event",
           "recorded_events"]


@dataclass
class FakeEndpoint:
    name: str
    aor: str
    tech: str = "PJSIP"
    device_state: str = "UNAVAILABLE"


class _Session:
    def __init__(self, server: FakeAMIServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.logged_in = False
        self.events = "off"
        self.challenge: str | None = None

    def wants(self, pairs: Pairs) -> bool:
        if not self.logged_in or self.events == "off":
            return False
        if self.events == "on":
            return True
        classes = {c.strip() for c in value_of(pairs, "Privilege").split(",")}
        return bool(classes & {c.strip() for c in self.events.split(",")})

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.transport.abort()


class FakeAMIServer(SipPeers):
    """See the module docstring. ``book``: the recorded replies (loaded from tests/fixtures)."""

    def __init__(
        self,
        *,
        username: str = "telephonyd",
        secret: str = "secret",
        book: ReplyBook | None = None,
        bad_login_delay_s: float = 1.0,
        host: str = "127.0.0.1",
        ssl: _ssl.SSLContext | None = None,
        version: str = ASTERISK_VERSIONS[0],
    ) -> None:
        """``ssl``: listen with TLS (Asterisk's ``tlsenable=yes``, 5039); the dialogue inside is
        the same recorded one (tests/fixtures/asterisk-22.10.1/ami/tls). ``version``: the Asterisk
        whose recordings every reply and event comes from (``20.20.1``: chan_sip peers too)."""
        self.ssl = ssl
        self.version = version
        self.rec = Recordings(version)
        self.username = username
        self.secret = secret
        self.book = book or ReplyBook(version=version)
        #: `UnrecordedAction` raised while answering; `stop` raises the first one.
        self.errors: list[UnrecordedAction] = []
        self.bad_login_delay_s = bad_login_delay_s
        self.host = host
        self.port = 0
        self.banner = banner() if version == ASTERISK_VERSIONS[0] else self.rec.banner()
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.contacts: dict[str, FakeContact] = {}
        self.actions: list[Pairs] = []
        self.logins = 0
        self.login_times: list[float] = []  # monotonic arrival of every Login action
        self.reject_logins = False
        #: Called (with no argument) just before answering the action of that lower-case name,
        #: e.g. to send events that Asterisk emits while a listing is being built.
        self.before_reply: dict[str, Callable[[], None]] = {}
        #: Actions (lower-case name) whose reply waits until the event is set (a slow Asterisk).
        self.hold: dict[str, asyncio.Event] = {}
        self.booted = True
        #: app_queue: None = not loaded (QueueStatus answers Invalid/unknown command); else
        #: {queue: {interface: (paused, reason)}}.
        self.queues: dict[str, dict[str, tuple[bool, str]]] | None = None
        #: {presentity (CustomPresence:1010): (status, subtype, message)} for PresenceStateList.
        self.presence: dict[str, tuple[str, str, str]] = {}
        #: {Custom:<name>: state} listed by DeviceStateList after the endpoints.
        self.custom_devices: dict[str, str] = {}
        #: chan_sip peers (only a version whose recordings have a SIPpeers list can answer for them).
        self.sip_peers = {}
        self._sessions: list[_Session] = []
        self._server: asyncio.Server | None = None
        self._awake = asyncio.Event()
        self._awake.set()
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._closed.set()
        self._awake.set()
        await self._close_listener()
        self.drop_connections()
        if self._conn_tasks:
            await asyncio.wait(set(self._conn_tasks), timeout=2.0)
        if self.errors:
            raise self.errors[0]

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    # -- observation -----------------------------------------------------------------------------

    @property
    def sessions(self) -> list[_Session]:
        return [s for s in self._sessions if s.logged_in]

    def actions_named(self, name: str) -> list[Pairs]:
        return [a for a in self.actions if value_of(a, "Action").lower() == name.lower()]

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        """Poll ``predicate()`` until true (deadline ``timeout`` s); AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("fake AMI: condition not reached in time")
            await asyncio.sleep(0.005)

    # -- state changes producing real event orders -----------------------------------------------

    def add_endpoint(self, name: str, *, aor: str | None = None, tech: str = "PJSIP") -> FakeEndpoint:
        endpoint = FakeEndpoint(name, aor or name, tech)
        self.endpoints[name] = endpoint
        return endpoint

    def register(self, endpoint: str, uri: str | None = None, *, qualify: bool = True, rtt_usec: int = 477,
                 expires_s: int = 3600, **fields: object) -> FakeContact:
        """REGISTER of a new contact (or a refresh when it exists: ContactStatus repeats its status)."""
        ep = self.endpoints.get(endpoint) or self.add_endpoint(endpoint)
        port = 5070 + len(self.contacts) % 20000
        uri = uri or f"sip:{endpoint}@127.0.0.1:{port}"
        cid = contact_id(ep.aor, uri)
        if cid in self.contacts:
            return self.refresh(cid, expires_s=expires_s)
        created = "NonQualified"
        contact = FakeContact(ep.aor, endpoint, uri, status=created, expiration_time=int(time.time()) + expires_s,
                              qualify_frequency=5 if qualify else 0, via_port=port, rec=self.rec, **fields)  # type: ignore[arg-type]
        # Asterisk's endpoint is available while any contact is (an Unreachable one does not count):
        # the first usable contact brings PeerStatus Reachable and DeviceStateChange NOT_INUSE.
        first = not any(c.status != "Unreachable" for c in self._contacts_of(endpoint))
        self.contacts[cid] = contact
        self.emit(contact.status_event(created, 0))
        if first:
            self.emit(peer_status(f"PJSIP/{endpoint}", "Reachable", self.rec))
        if qualify:
            contact.status, contact.rtt_usec = "Reachable", rtt_usec
            self.emit(contact.status_event())
        else:
            contact.status = "NonQualified"
        if first:
            self.set_device_state(endpoint, "NOT_INUSE")
        return contact

    def refresh(self, cid: str, *, expires_s: int = 3600) -> FakeContact:
        """A registration refresh: a new expiration and, on Asterisk 22, no ContactStatus at all,
        only the security events of the REGISTER's authentication (re_register_events_on.txt)."""
        contact = self.contacts[cid]
        contact.expiration_time = int(time.time()) + expires_s
        for event in contact.auth_events():
            self.emit(event)
        return contact

    def unregister(self, cid: str) -> None:
        """REGISTER with Expires: 0 (or expiry): PeerStatus Unreachable -> DeviceStateChange -> Removed."""
        contact = self.contacts.pop(cid)
        if not self._contacts_of(contact.endpoint):
            self.emit(peer_status(f"PJSIP/{contact.endpoint}", "Unreachable", self.rec))
            self.set_device_state(contact.endpoint, "UNAVAILABLE")
        self.emit(contact.status_event("Removed", 0))

    def set_reachability(self, cid: str, reachable: bool, *, rtt_usec: int = 512) -> None:
        """A qualify result: ContactStatus Reachable/Unreachable, then the endpoint-level events."""
        contact = self.contacts[cid]
        contact.status = "Reachable" if reachable else "Unreachable"
        contact.rtt_usec = rtt_usec if reachable else 0
        self.emit(contact.status_event())
        others = [c for c in self._contacts_of(contact.endpoint) if c is not contact]
        if not any(c.status == "Reachable" for c in others):
            self.emit(peer_status(f"PJSIP/{contact.endpoint}", contact.status, self.rec))
            self.set_device_state(contact.endpoint, "NOT_INUSE" if reachable else "UNAVAILABLE")

    def add_contacts_silently(self, contacts: Iterable[FakeContact]) -> None:
        """Put contacts in place without events (as if registered before we connected)."""
        for contact in contacts:
            contact.rec = self.rec
            self.endpoints.setdefault(contact.endpoint, FakeEndpoint(contact.endpoint, contact.aor))
            self.contacts[contact.id] = contact

    def remove_contacts_silently(self, ids: Iterable[str]) -> None:
        """Drop contacts without events (as if it happened while we were not connected); an endpoint
        left with no usable contact becomes UNAVAILABLE in its device state, silently too."""
        for cid in ids:
            contact = self.contacts.pop(cid, None)
            if contact is not None and not any(c.status != "Unreachable" for c in self._contacts_of(contact.endpoint)):
                self.endpoints[contact.endpoint].device_state = "UNAVAILABLE"

    def set_device_state(self, endpoint: str, state: str) -> None:
        ep = self.endpoints.get(endpoint) or self.add_endpoint(endpoint)
        ep.device_state = state
        self.emit(device_state_change(f"{ep.tech}/{endpoint}", state, self.rec))

    # -- queues, presence, Custom: device states (events built on the lab recordings) -----------

    def queue_pause(self, interface: str, paused: bool, reason: str = "", queue: str | None = None) -> None:
        """QueuePause as Asterisk does it: one QueueMemberPause per queue the member is paused in."""
        for name, members in sorted((self.queues or {}).items()):
            if interface in members and (queue is None or queue == name):
                members[interface] = (paused, reason if paused else "")
                self.emit(queue_member_event("QueueMemberPause", name, interface, paused, members[interface][1]))

    def set_custom_device(self, device: str, state: str) -> None:
        """``DEVICE_STATE(Custom:DND1010)=BUSY``: the DeviceStateChange Asterisk sends."""
        self.custom_devices[device] = state
        self.emit(device_state_change(device, state, self.rec))

    def set_presence(self, presentity: str, status: str, subtype: str = "", message: str = "") -> None:
        """``PRESENCE_STATE(CustomPresence:1010)=dnd,,``: the PresenceStateChange Asterisk sends."""
        self.presence[presentity] = (status, subtype, message)
        self.emit(presence_state_change(presentity, status, subtype, message))

    def _contacts_of(self, endpoint: str) -> list[FakeContact]:
        return [c for c in self.contacts.values() if c.endpoint == endpoint]

    # -- sending ---------------------------------------------------------------------------------

    def emit(self, pairs: Pairs | dict[str, str]) -> None:
        """Send one event to every logged-in session whose Events setting includes its class."""
        items = list(pairs.items()) if isinstance(pairs, dict) else pairs
        data = encode(items)
        for session in self.sessions:
            if session.wants(items) and self._awake.is_set():
                session.send(data)

    def emit_raw(self, data: bytes) -> None:
        """Send bytes verbatim to every logged-in session (floods, garbage, recorded streams)."""
        for session in self.sessions:
            session.send(data)

    def replay(self, name: str) -> int:
        """Send a raw recording (``02_register_ami_events_all.txt``...) event by event; returns the count."""
        ami = self.rec.ami
        events = split_raw((ami / name).read_bytes()) if (ami / name).exists() else self.rec.events(name)
        for pairs in events:
            self.emit(pairs)
        return len(events)

    def send_garbage(self, data: bytes = b"\x00\x01\xfe this is not AMI\r\n\r\n") -> None:
        self.emit_raw(data)

    def send_oversized_line(self, size: int) -> None:
        self.emit_raw(b"Event: Junk\r\nData: " + b"x" * size)

    # -- faults ----------------------------------------------------------------------------------

    def drop_connections(self) -> None:
        for session in list(self._sessions):
            session.close()
        self._sessions.clear()

    def go_silent(self) -> None:
        """Stop reading, answering (Ping included) and sending, with the sockets left open."""
        self._awake.clear()

    def wake_up(self) -> None:
        self._awake.set()

    async def shutdown(self) -> None:
        """Asterisk stopping: the Shutdown event (12_shutdown_sigterm), close, stop listening."""
        self.emit(self.rec.event("Shutdown", prefer="12_shutdown_sigterm_ami_events.txt"))
        await self._close_listener()
        for session in list(self._sessions):
            with contextlib.suppress(ConnectionError):
                await session.writer.drain()
        self.drop_connections()

    async def boot(self, *, fully_booted: bool = True) -> None:
        """Listen again on the same port; logins then see FullyBooted (if ``fully_booted``)."""
        self.booted = fully_booted
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl)

    def finish_boot(self) -> None:
        """Boot completes for sessions already logged in: FullyBooted."""
        self.booted = True
        self.emit(self._fully_booted())

    # -- protocol --------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        session = _Session(self, reader, writer)
        self._sessions.append(session)
        try:
            session.send(self.banner)
            buffer = b""
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
                while b"\r\n\r\n" in buffer:
                    block, buffer = buffer.split(b"\r\n\r\n", 1)
                    await self._awake.wait()
                    pairs = [(k, v) for k, _, v in (ln.partition(": ") for ln in block.decode().split("\r\n")) if k]
                    self.actions.append(pairs)
                    try:
                        answered = await self._answer(session, pairs)
                    except UnrecordedAction as exc:
                        self.errors.append(exc)
                        return
                    if not answered:
                        return
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if session in self._sessions:
                self._sessions.remove(session)
            session.close()
            self._conn_tasks.discard(task)

    async def _answer(self, s: _Session, pairs: Pairs) -> bool:
        action = value_of(pairs, "Action")
        name = action.lower()
        aid = value_of(pairs, "ActionID")
        hook = self.before_reply.get(name)
        if hook is not None and s.logged_in:
            hook()
        held = self.hold.get(name)
        if held is not None:
            await held.wait()
        book = self.book
        if name == "login":
            return await self._login(s, pairs, aid)
        if name == "challenge":
            s.challenge = str(random.randint(100_000_000, 999_999_999))
            s.send(book.single("Challenge", aid, Challenge=s.challenge))
            return True
        if not s.logged_in:
            raise UnrecordedAction(f"no recording of Asterisk answering {action} before Login")
        if name == "ping":
            s.send(book.single("Ping", aid, Timestamp=f"{time.time():.6f}"))
        elif name == "logoff":
            s.send(book.single("Logoff", aid))
            return False
        elif name == "pjsipshowcontacts":
            if not self.contacts:
                s.send(book.single("PJSIPShowContacts", aid, where="No Contacts found"))
            else:
                s.send(book.listing("PJSIPShowContacts").render(
                    aid, [("ContactList", c.list_values()) for c in self.contacts.values()]))
        elif name == "pjsipshowregistrationinboundcontactstatuses":
            s.send(book.listing(action).render(
                aid, [("ContactStatusDetail", c.status_detail_values()) for c in self.contacts.values()]))
        elif name == "pjsipshowendpoint":
            self._show_endpoint(s, aid, value_of(pairs, "Endpoint"))
        elif name == "pjsipshowendpoints":
            s.send(book.listing("PJSIPShowEndpoints").render(aid, [
                ("EndpointList", {"ObjectName": ep.name, "Aor": ep.aor, "Auths": ep.name,
                                  "Contacts": "".join(f"{c.aor}/{c.uri}," for c in self._contacts_of(ep.name)),
                                  "DeviceState": _DEVICE_TEXT.get(ep.device_state, "Unknown")})
                for ep in self.endpoints.values()]))
        elif name == "devicestatelist":
            s.send(book.listing("DeviceStateList").render(aid, [
                ("DeviceStateChange", {"Device": f"{ep.tech}/{ep.name}", "State": ep.device_state})
                for ep in self.endpoints.values()] + [
                ("DeviceStateChange", {"Device": device, "State": state}) for device, state in self.custom_devices.items()] + [
                ("DeviceStateChange", {"Device": f"SIP/{p.name}", "State": p.device_state}) for p in self.sip_peers.values()]))
        elif name == "queuestatus" and self.queues is None:
            s.send(book.single("QueueStatus", aid, where="Invalid/unknown command"))
        elif name == "queuestatus":
            items: list[tuple[str, dict[str, object]]] = []
            for queue, members in sorted(self.queues.items()):
                items.append(("QueueParams", {"Queue": queue}))
                items += [("QueueMember", {"Queue": queue, "Name": f"Agent {i.partition('/')[2]}", "Location": i,
                                           "StateInterface": i, "Paused": int(p), "PausedReason": r})
                          for i, (p, r) in members.items()]
            s.send(book.listing("QueueStatus").render(aid, items))
        elif name == "presencestatelist":
            s.send(book.listing("PresenceStateList").render(aid, [
                ("PresenceStateChange", {"Presentity": who, "Status": st, "Subtype": sub, "Message": msg})
                for who, (st, sub, msg) in self.presence.items()]))
        elif name == "sippeers" and len(messages(book.reply(action))) > 1:
            s.send(book.listing("SIPpeers").render(aid, self.sip_peer_items()))
        elif name == "coreshowchannels":
            s.send(book.listing("CoreShowChannels").render(aid, []))
        elif book.has(action) and len(messages(book.reply(action))) == 1:
            # Answered the same whatever the state (CoreSettings, Filter, an action no module has...).
            only = messages(book.reply(action))[0]
            s.send(frame([fill(only, {"ActionID": aid})]))
        else:
            raise UnrecordedAction(f"no recorded reply of Asterisk {self.version} to Action: {action} in this state")
        return True

    async def _login(self, s: _Session, pairs: Pairs, aid: str) -> bool:
        self.login_times.append(time.monotonic())
        user = value_of(pairs, "Username")
        if value_of(pairs, "AuthType").lower() == "md5":
            expected = hashlib.md5(((s.challenge or "") + self.secret).encode()).hexdigest()
            good = s.challenge is not None and value_of(pairs, "Key") == expected
        else:
            good = value_of(pairs, "Secret") == self.secret
        if self.reject_logins or user != self.username or not good:
            with contextlib.suppress(TimeoutError):  # Asterisk waits before answering
                await asyncio.wait_for(self._closed.wait(), self.bad_login_delay_s)
            s.send(self.book.single("Login", aid, where="Authentication failed"))
            with contextlib.suppress(ConnectionError):
                await s.writer.drain()
            return False
        s.events = (value_of(pairs, "Events") or "on").lower()
        s.send(self.book.single("Login", aid, where="Authentication accepted"))
        s.logged_in = True
        self.logins += 1
        if self.booted and s.wants([("Privilege", "system,all")]):
            s.send(encode(self._fully_booted()))
        return True

    def _fully_booted(self) -> Pairs:
        return fully_booted(self.rec)

    def _show_endpoint(self, s: _Session, aid: str, name: str) -> None:
        ep = self.endpoints.get(name)
        if ep is None or ep.tech != "PJSIP":
            s.send(self.book.single("PJSIPShowEndpoint", aid, where="Unable to retrieve endpoint",
                                    Message=f"Unable to retrieve endpoint {name}"))
            return
        contacts = self._contacts_of(name)
        items: list[tuple[str, dict[str, object]]] = [
            ("EndpointDetail", {"ObjectName": name, "Aors": ep.aor, "Auth": name,
                                "DeviceState": _DEVICE_TEXT.get(ep.device_state, "Unknown")}),
            ("AuthDetail", {"ObjectName": name, "Username": name, "EndpointName": name}),
            ("AorDetail", {"ObjectName": ep.aor, "Contacts": ",".join(f"{c.aor}/{c.uri}" for c in contacts),
                           "TotalContacts": len(contacts), "ContactsRegistered": len(contacts), "EndpointName": name}),
        ]
        items.extend(("ContactStatusDetail", c.status_detail_values()) for c in contacts)
        listing = self.book.listing("PJSIPShowEndpoint")
        if "transportdetail" in listing.items:  # 22.10.1 was recorded with one; 20.20.1's lab names no transport
            items.insert(2, ("TransportDetail", {"EndpointName": name}))
        s.send(listing.render(aid, items))


_DEVICE_TEXT = {"NOT_INUSE": "Not in use", "INUSE": "In use", "BUSY": "Busy", "UNAVAILABLE": "Unavailable",
                "RINGING": "Ringing", "RINGINUSE": "Ring+Inuse", "ONHOLD": "On Hold", "UNKNOWN": "Unknown",
                "INVALID": "Invalid"}
