"""What a real Asterisk sends over AMI, taken from the recordings in tests/fixtures.

Independent of telephonyd's own parser on purpose (a fake that shares the parser under test would
hide its bugs): messages here are lists of ``(key, value)`` pairs and raw bytes. The module-level
helpers read Asterisk 22.10.1's recordings; `Recordings` reads those of any recorded version
(``Recordings("20.20.1")``: tests/fixtures/asterisk-20.20.1/ami, chan_sip enabled).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ASTERISK_FIXTURES, ASTERISK_VERSIONS, asterisk_fixtures

AMI_RECORDINGS = ASTERISK_FIXTURES / "ami"
VICIDIAL_RECORDINGS = ASTERISK_FIXTURES / "vicidial"

Pairs = list[tuple[str, str]]


def transcript_blocks(path: Path) -> list[tuple[str, bytes]]:
    """The blocks of an annotated transcript (01, 01b, 03): ``[(direction, raw bytes)]``.

    ``direction`` is ``banner``, ``sent`` or ``received``. The annotation adds one bare ``\\n``
    after a block before the next ``###`` header; it is removed, every other byte is kept.
    """
    data = path.read_bytes()
    blocks: list[tuple[str, bytes]] = []
    direction: str | None = None
    chunk = bytearray()

    def flush() -> None:
        if direction is not None:
            raw = bytes(chunk)
            if raw.endswith(b"\r\n\n"):
                raw = raw[:-1]
            blocks.append((direction, raw))

    for line in data.splitlines(keepends=True):
        if line.startswith(b"###"):
            flush()
            chunk = bytearray()
            header = line.decode()
            direction = ("banner" if "BANNER" in header else "sent" if "SENT" in header
                         else "received" if "RECEIVED" in header else None)
            continue
        chunk += line
    flush()
    return blocks


def received_stream(path: Path) -> bytes:
    """Every byte Asterisk sent in an annotated transcript, banner first, in order."""
    return b"".join(raw for direction, raw in transcript_blocks(path) if direction in ("banner", "received"))


@dataclass(frozen=True)
class RecordedAction:
    """One action of a ``>>> ``-annotated session (ami_actions_*.txt) and Asterisk's reply bytes."""

    sent: Pairs
    reply: bytes

    @property
    def name(self) -> str:
        return value_of(self.sent, "Action")


def action_transcript(path: Path) -> list[RecordedAction]:
    """The actions of ``ami_actions_22.10.1.txt``: each ``>>> `` block (sent, CRLF-ended) is followed
    by the reply bytes verbatim; the annotation adds one bare ``\n`` after each reply, removed here."""
    data = path.read_bytes()
    out: list[RecordedAction] = []
    for chunk in data.split(b"\n>>> ")[1:]:
        sent, sep, reply = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if reply.endswith(b"\r\n\n"):
            reply = reply[:-1]
        pairs = [(k, v) for k, _, v in (ln.partition(": ") for ln in sent.decode().split("\r\n")) if k]
        out.append(RecordedAction(pairs, reply))
    return out


def split_raw(data: bytes) -> list[Pairs]:
    """Messages of a raw ``*_events*`` recording (each ends with ``\\r\\n\\r\\n``)."""
    messages: list[Pairs] = []
    for block in data.split(b"\r\n\r\n"):
        text = block.decode("utf-8", "replace").strip("\r\n")
        if not text:
            continue
        pairs: Pairs = []
        for line in text.replace("\r\n", "\n").split("\n"):
            key, _, value = line.partition(": ")
            pairs.append((key, value))
        messages.append(pairs)
    return messages


def recorded_events(name: str, *, event: str | None = None) -> list[Pairs]:
    """Events of a raw recording under ami/ (or vicidial/), optionally only those named ``event``."""
    path = AMI_RECORDINGS / name
    for other in (AMI_RECORDINGS / "events" / name, VICIDIAL_RECORDINGS / name):
        if not path.exists():
            path = other
    found = split_raw(path.read_bytes())
    if event is not None:
        found = [m for m in found if value_of(m, "Event").lower() == event.lower()]
    return found


def value_of(pairs: Pairs, key: str, default: str = "") -> str:
    for k, v in pairs:
        if k.lower() == key.lower():
            return v
    return default


def with_values(pairs: Pairs, **changes: str) -> Pairs:
    """A copy of a recorded message with some values replaced (keys matched case-insensitively)."""
    lowered = {k.lower(): v for k, v in changes.items()}
    return [(k, lowered.get(k.lower(), v)) for k, v in pairs]


def encode(pairs: Pairs | dict[str, str]) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return "".join(f"{k}: {v}\r\n" for k, v in items).encode() + b"\r\n"


def banner() -> bytes:
    """The banner line exactly as recorded (``Asterisk Call Manager/11.0.0\\r\\n``)."""
    return transcript_blocks(AMI_RECORDINGS / "01_ami_banner_login.txt")[0][1]


class NotRecorded(ValueError):
    """No recording of this Asterisk version has the event a fake was asked to send."""


@dataclass(frozen=True)
class Recordings:
    """The AMI recordings of one Asterisk version (tests/fixtures/asterisk-<version>/ami).

    `event` finds the template of an event the fake sends: in ``prefer`` (a recording of that
    version) when it exists there, else in every raw event recording of the version
    (``events/*.raw``, file name order). Nothing is made up: no such event raises `NotRecorded`.
    """

    version: str = ASTERISK_VERSIONS[0]

    @property
    def ami(self) -> Path:
        return asterisk_fixtures(self.version) / "ami"

    def events(self, name: str, *, event: str | None = None) -> list[Pairs]:
        """Events of one recording of this version (``ami/<name>``, ``ami/events/<name>``)."""
        path = self.ami / name
        for other in (self.ami / "events" / name, asterisk_fixtures(self.version) / "vicidial" / name):
            if not path.exists():
                path = other
        found = split_raw(path.read_bytes())
        if event is not None:
            found = [m for m in found if value_of(m, "Event").lower() == event.lower()]
        return found

    def event(self, event: str, *, prefer: str | None = None, **where: str) -> Pairs:
        """The first ``event`` whose fields equal ``where`` (see the class docstring)."""
        names = [prefer] if prefer and (self.ami / prefer).exists() or prefer and (self.ami / "events" / prefer).exists() else []
        names += [p.name for p in sorted((self.ami / "events").glob("*.raw"))]
        for name in names:
            for message in self.events(name, event=event):
                if all(value_of(message, k) == v for k, v in where.items()):
                    return list(message)
        raise NotRecorded(f"no {event} {where or ''} recorded from Asterisk {self.version}")

    def banner(self) -> bytes:
        """The AMI banner line as this version sent it (``Asterisk Call Manager/<AMI version>\\r\\n``)."""
        first = self.ami / "01_ami_banner_login.txt"
        if first.exists():
            return transcript_blocks(first)[0][1]
        for path in sorted((self.ami / "actions").glob("*.txt")):
            head, sep, rest = path.read_bytes().partition(b"### banner\n")
            if sep:
                return rest.split(b"\r\n", 1)[0] + b"\r\n"
        raise NotRecorded(f"no AMI banner recorded from Asterisk {self.version}")


#: Asterisk 22.10.1's recordings, the default of every helper below.
DEFAULT_RECORDINGS = Recordings()


def contact_id(aor: str, uri: str) -> str:
    return f"{aor};@{hashlib.md5(uri.encode()).hexdigest()}"


@dataclass
class FakeContact:
    """A registered contact as res_pjsip holds it."""

    aor: str
    endpoint: str
    uri: str
    status: str = "NonQualified"
    rtt_usec: int = 0
    expiration_time: int = 0
    qualify_frequency: int = 5
    qualify_timeout: float = 3.0
    user_agent: str = "sipp-lab"
    via_addr: str = "127.0.0.1"
    via_port: int = 5070
    call_id: str = ""  # default: one per contact, like a phone's REGISTER Call-ID
    reg_server: str = ""
    prune_on_boot: str = "no"
    extra: dict[str, str] = field(default_factory=dict)
    #: The Asterisk version whose recorded events this contact's events are built on.
    rec: Recordings = field(default=DEFAULT_RECORDINGS, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.call_id:
            self.call_id = f"1-{int(hashlib.md5(self.uri.encode()).hexdigest()[:6], 16) % 99991}@127.0.0.1"

    @property
    def id(self) -> str:
        return contact_id(self.aor, self.uri)

    def status_event(self, status: str | None = None, rtt: int | None = None) -> Pairs:
        """ContactStatus on the recorded one (ami_all_ContactStatus_PeerStatus_events.txt on 22.10.1)."""
        return with_values(self.rec.event("ContactStatus", prefer="ami_all_ContactStatus_PeerStatus_events.txt"),
                           URI=self.uri, ContactStatus=status or self.status, AOR=self.aor,
                           EndpointName=self.endpoint, RoundtripUsec=str(self.rtt_usec if rtt is None else rtt))

    def auth_events(self) -> list[Pairs]:
        """What a re-REGISTER of this contact sends on Asterisk 22 (events/re_register_events_on.txt):
        ChallengeSent then SuccessfulAuth (class security), ``SessionID`` = the REGISTER's Call-ID."""
        values = {"AccountID": self.endpoint, "SessionID": self.call_id}
        return [with_values(self.rec.event(name, prefer="re_register_events_on.txt", Service="PJSIP"), **values)
                for name in ("ChallengeSent", "SuccessfulAuth")]

    def list_values(self) -> dict[str, str]:
        """The values of this contact's ``ContactList`` item (PJSIPShowContacts); the fields and their
        order come from the recorded item (ami_actions_22.10.1.txt)."""
        return {"ObjectName": self.id, "ViaAddr": self.via_addr, "QualifyTimeout": f"{self.qualify_timeout:.6f}",
                "CallId": self.call_id, "RegServer": self.reg_server, "PruneOnBoot": self.prune_on_boot,
                "Endpoint": self.endpoint, "ViaPort": str(self.via_port), "Uri": self.uri,
                "QualifyFrequency": str(self.qualify_frequency), "UserAgent": self.user_agent,
                "ExpirationTime": str(self.expiration_time), "Status": self.status,
                "RoundtripUsec": str(self.rtt_usec) if self.status == "Reachable" else "N/A"}

    def status_detail_values(self) -> dict[str, str]:
        """The values of this contact's ``ContactStatusDetail`` item (PJSIPShowEndpoint)."""
        return {"AOR": self.aor, "URI": self.uri, "UserAgent": self.user_agent, "RegExpire": str(self.expiration_time),
                "ViaAddress": f"{self.via_addr}:{self.via_port}", "CallID": self.call_id, "Status": self.status,
                "RoundtripUsec": str(self.rtt_usec) if self.status == "Reachable" else "N/A",
                "EndpointName": self.endpoint, "ID": self.id,
                "QualifyFrequency": str(self.qualify_frequency), "QualifyTimeout": f"{self.qualify_timeout:.3f}"}


def recorded_event(recording: str, event: str, **where: str) -> Pairs:
    """The first ``event`` of a recording (whose fields equal ``where``): the template the fake fills."""
    found = [m for m in recorded_events(recording, event=event)
             if all(value_of(m, k) == v for k, v in where.items())]
    if not found:
        raise ValueError(f"no {event} recorded in {recording}")
    return list(found[0])


def peer_status(peer: str, status: str, rec: Recordings = DEFAULT_RECORDINGS) -> Pairs:
    """PeerStatus as res_pjsip sends it (``Peer: PJSIP/1010``), on the recorded one."""
    return with_values(rec.event("PeerStatus", prefer="ami_all_ContactStatus_PeerStatus_events.txt", ChannelType="PJSIP"),
                       ChannelType=peer.split("/", 1)[0], Peer=peer, PeerStatus=status)


def sip_peer_status(peer: str, status: str, rec: Recordings, **values: str) -> Pairs:
    """PeerStatus as chan_sip sends it (``ChannelType: SIP``, ``Peer: SIP/2010``), on a recorded one of
    the same ``PeerStatus`` (their fields differ: ``Address`` on Registered, ``Time`` on Reachable)."""
    return with_values(rec.event("PeerStatus", ChannelType="SIP", PeerStatus=status), Peer=f"SIP/{peer}", **values)


def device_state_change(device: str, state: str, rec: Recordings = DEFAULT_RECORDINGS) -> Pairs:
    return with_values(rec.event("DeviceStateChange", prefer="02_register_ami_events_all.txt"), Device=device, State=state)


def queue_member_event(event: str, queue: str, interface: str, paused: bool, reason: str) -> Pairs:
    """QueueMemberPause (or another QueueMember* event recorded in the lab) for one member."""
    recording = "lab_17_queue_pause_unpause.raw" if event == "QueueMemberPause" else "lab_16_queue_call_answered_by_member.raw"
    return with_values(recorded_event(recording, event), Queue=queue, MemberName=f"Agent {interface.partition('/')[2]}",
                       Interface=interface, StateInterface=interface, Paused=str(int(paused)), PausedReason=reason)


def presence_state_change(presentity: str, status: str, subtype: str, message: str) -> Pairs:
    return with_values(recorded_event("lab_18_custom_devstate_and_presence.raw", "PresenceStateChange"),
                       Presentity=presentity, Status=status, Subtype=subtype, Message=message)


def fully_booted(rec: Recordings = DEFAULT_RECORDINGS) -> Pairs:
    return rec.event("FullyBooted", prefer="re_register_events_on.txt")


def reload_event(module: str) -> Pairs:
    """``module reload res_pjsip.so`` (events/reload_register_unregister_events.txt)."""
    return with_values(recorded_event("reload_register_unregister_events.txt", "Reload"), Module=module)


def channel_event(event: str, channel: str, uniqueid: str, *, linkedid: str | None = None,
                  **extra: str) -> Pairs:
    """A Newchannel/Hangup/... built on the recorded channel snapshot of that event name."""
    template = recorded_events("06b_sip_call_agi_ami_events_all.txt", event=event) or recorded_events(
        "ami_all_Hangup_events.txt", event=event)
    if not template:
        raise ValueError(f"no recorded {event} to build on")
    pairs = with_values(template[0], Channel=channel, Uniqueid=uniqueid, Linkedid=linkedid or uniqueid)
    keys = {k.lower() for k, _ in pairs}
    pairs = with_values(pairs, **{k: v for k, v in extra.items() if k.lower() in keys})
    pairs.extend((k, v) for k, v in extra.items() if k.lower() not in keys)
    return pairs
