"""Asterisk's recorded replies to AMI actions, and the only ways the fake may vary them.

The fake AMI server answers an action only with a reply a real Asterisk gave to that action
(tests/fixtures/asterisk-<version>/ami/: ``ami_actions_<version>.txt``, the annotated transcripts 01,
01b, 03, and the ``actions/`` recordings of the lab when present); ``ReplyBook(version="20.20.1")``
holds Asterisk 20.20.1's (chan_sip enabled), the default is 22.10.1's. What it may change:

- the ``ActionID`` (every reply and list item);
- the values a reply is parametrised by, field by field, in a recorded message: a list's items
  (one recorded item per event name is the template; the fake fills one copy per contact,
  endpoint or device it holds), ``ListItems``, a Ping's ``Timestamp``, the endpoint named in
  ``Unable to retrieve endpoint <name>``, the action named in ``Invalid/unknown command: <Action>.``.

A value can only replace one of a recorded message's fields: the field set, their order and every
byte of framing (the bare ``\\n`` Asterisk puts before some blank lines included) stay Asterisk's.
An action with no recording raises `UnrecordedAction`: it is a question for a real Asterisk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ASTERISK_VERSIONS, asterisk_fixtures
from tests.fakes.ami_wire import AMI_RECORDINGS, Pairs, RecordedAction, action_transcript, transcript_blocks

#: Annotated transcripts (``### >>> SENT >>>`` / ``### <<< RECEIVED <<<``) with action replies.
TRANSCRIPTS = ("01_ami_banner_login.txt", "01b_ami_login_bad_secret.txt", "03_PJSIPShowContacts_registered.txt")
#: ``>>> ``-annotated sessions: every reply of the action-by-action recordings (one per version).
ACTION_SESSIONS = tuple(f"ami_actions_{version}.txt" for version in ASTERISK_VERSIONS)
#: Lab transcripts in the ``### >>> SENT >>>`` format, one item per file (queues, presence, Custom:).
LAB_TRANSCRIPTS = "lab_actions"


class UnrecordedAction(AssertionError):
    """The fake was asked for something no recording of a real Asterisk answers."""


def _transcript_actions(path: Path) -> list[RecordedAction]:
    out: list[RecordedAction] = []
    sent: Pairs | None = None
    for direction, raw in transcript_blocks(path):
        if direction == "sent":
            text = raw.decode().split("\r\n")
            sent = [(k, v) for k, _, v in (ln.partition(": ") for ln in text) if k]
        elif direction == "received" and sent is not None:
            if raw.strip():
                out.append(RecordedAction(sent, raw))
            sent = None
    return out


def recorded_actions(directory: Path = AMI_RECORDINGS) -> list[RecordedAction]:
    """Every recorded action and its reply, in file order."""
    out: list[RecordedAction] = []
    for name in ACTION_SESSIONS:
        if (directory / name).exists():
            out.extend(action_transcript(directory / name))
    for name in TRANSCRIPTS:
        if (directory / name).exists():
            out.extend(_transcript_actions(directory / name))
    lab = directory / "actions"
    if lab.is_dir():
        for path in sorted(lab.glob("*.txt")):
            out.extend(action_transcript(path))
    transcripts = directory / LAB_TRANSCRIPTS
    if transcripts.is_dir():
        for path in sorted(transcripts.glob("*.txt")):
            out.extend(_transcript_actions(path))
    return out


# -- messages as Asterisk framed them -----------------------------------------------------------


def messages(raw: bytes) -> list[bytes]:
    """The messages of a reply, each without its ``\\r\\n\\r\\n`` terminator (bytes kept as sent)."""
    return [m for m in raw.split(b"\r\n\r\n") if m.strip(b"\r\n")]


def key_of(message: bytes, key: str) -> str:
    for line in message.split(b"\r\n"):
        k, sep, v = line.decode().partition(": ")
        if sep and k.lower() == key.lower():
            return v.rstrip("\n")
    return ""


def fill(message: bytes, values: Mapping[str, object]) -> bytes:
    """``message`` with the values of some of its fields replaced (keys case-insensitive).

    A trailing bare ``\\n`` of a recorded value stays. Raises `UnrecordedAction` for a key the
    recorded message does not have: Asterisk does not send that field there.
    """
    wanted = {k.lower(): str(v) for k, v in values.items()}
    seen: set[str] = set()
    lines = []
    for line in message.split(b"\r\n"):
        text = line.decode()
        key, sep, value = text.partition(": ")
        if not sep and text.endswith(":"):
            key, sep, value = text[:-1], ": ", ""
        if sep and key.lower() in wanted:
            seen.add(key.lower())
            stray = "\n" if value.endswith("\n") else ""
            text = f"{key}: {wanted[key.lower()]}{stray}"
        lines.append(text.encode())
    missing = set(wanted) - seen
    if missing:
        raise UnrecordedAction(f"recorded {key_of(message, 'Event') or 'reply'} has no field {sorted(missing)}")
    return b"\r\n".join(lines)


def frame(parts: Iterable[bytes]) -> bytes:
    return b"".join(p + b"\r\n\r\n" for p in parts)


@dataclass
class RecordedList:
    """A recorded list reply: its head, one item template per event name, and the closing event."""

    head: bytes
    items: dict[str, bytes]
    complete: bytes

    def render(self, action_id: str, items: list[tuple[str, Mapping[str, object]]]) -> bytes:
        """The reply for ``items`` (``(event name, values)``), each built on its recorded template."""
        out = [fill(self.head, {"ActionID": action_id})]
        for event, values in items:
            template = self.items.get(event.lower())
            if template is None:
                raise UnrecordedAction(f"no recorded {event} item in this listing")
            out.append(fill(template, {"ActionID": action_id, **values}))
        out.append(fill(self.complete, {"ActionID": action_id, "ListItems": len(items)}))
        return frame(out)


class ReplyBook:
    """The recorded replies of one Asterisk version, by action name (lower case)."""

    def __init__(self, actions: Iterable[RecordedAction] | None = None, *, version: str = ASTERISK_VERSIONS[0]) -> None:
        self.version = version
        self.by_action: dict[str, list[RecordedAction]] = {}
        if actions is None:
            actions = recorded_actions(asterisk_fixtures(version) / "ami")
        for action in actions:
            self.by_action.setdefault(action.name.lower(), []).append(action)

    def names(self) -> set[str]:
        return {actions[0].name for actions in self.by_action.values()}

    def has(self, action: str) -> bool:
        return action.lower() in self.by_action

    def replies(self, action: str) -> list[RecordedAction]:
        found = self.by_action.get(action.lower())
        if not found:
            raise UnrecordedAction(f"no recorded reply of Asterisk {self.version} to Action: {action}")
        return found

    def reply(self, action: str, *, where: str | None = None) -> bytes:
        """The first recorded reply to ``action`` (whose bytes contain ``where``, when given)."""
        for recorded in self.replies(action):
            if where is None or where.encode() in recorded.reply:
                return recorded.reply
        raise UnrecordedAction(f"no recorded reply to Action: {action} containing {where!r}")

    def single(self, action: str, action_id: str, *, where: str | None = None, **values: object) -> bytes:
        """A one-message reply with its ActionID (and ``values``) replaced."""
        first = messages(self.reply(action, where=where))[0]
        return frame([fill(first, {"ActionID": action_id, **values})])

    def listing(self, action: str) -> RecordedList:
        """The recorded list reply to ``action`` with the most kinds of items."""
        best: RecordedList | None = None
        for recorded in self.replies(action):
            parts = messages(recorded.reply)
            if len(parts) < 2 or key_of(parts[0], "EventList").lower() != "start":
                continue
            items: dict[str, bytes] = {}
            for part in parts[1:-1]:
                items.setdefault(key_of(part, "Event").lower(), part)
            candidate = RecordedList(parts[0], items, parts[-1])
            if best is None or len(candidate.items) > len(best.items):
                best = candidate
        if best is None:
            raise UnrecordedAction(f"no recorded list reply to Action: {action}")
        return best
