"""A fake Asterisk that connects to a FastAGI server the way Asterisk 22 does.

It replays recordings of a real Asterisk 22.10.1 (``tests/fixtures/asterisk-22.10.1/``): the ``agi_*``
block of a recording is sent byte-exact, and the channel's variables are taken from what that
Asterisk answered to the recorded ``GET VARIABLE`` and ``GET FULL VARIABLE`` commands. A command is
answered by res_agi.c's rules (the value read, the expansion, the stored variable), and the reply
must then have a form a real Asterisk gave to that command on a channel in the same state (live, or
dead: ``h`` extension or after a ``HANGUP`` line), the data in parentheses aside: `recorded_forms`.
A command whose reply form was never recorded raises `UnrecordedCommand` (in `FakeChannel.answer`,
so in `run_session` and in the test): it is a question for a real Asterisk, never a made-up reply.

Recorded forms (vicidial/, agi/ and the lab sessions agi/lab_agi_command_responses.txt):

- ``GET VARIABLE X``: ``200 result=1 (value)`` when set (``200 result=1 ()`` when empty), ``200
  result=0`` when unset, live and dead. ``GET FULL VARIABLE expr``: ``200 result=1 (expansion)``.
- ``SET VARIABLE name value``: ``200 result=1``, live and dead (``h``). ``VERBOSE``: ``200 result=1``.
- A wrong argument count: ``520 Invalid command syntax.  Proper usage not available.`` (one line).
- ``NOOP`` -> ``200 result=0``, ``CHANNEL STATUS`` -> ``200 result=6`` (live); on a dead channel
  ``CHANNEL STATUS``, ``ANSWER``, ``STREAM FILE`` -> ``511 Command Not Permitted on a dead channel or
  intercept routine``; ``BOGUS COMMAND`` -> ``510 Invalid or unknown command``.

`run_session` plays one AGI() call against a server: connects, sends the block, answers commands,
optionally pushes an unsolicited ``HANGUP`` line, and returns a `SessionTranscript` with every
command, every reply, the variables the server set, and whether/when the server closed the socket.
Asterisk's string rules live in `agi_rules`, the readers of the recordings in `agi_recordings`.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .agi_recordings import RecordedExchange, derive_variables, parse_capture, parse_responses
from .agi_rules import expand, parse_agi_args

__all__ = [
    "AGI_DIR", "FIXTURES", "REPLY_510", "REPLY_511", "VICIDIAL_DIR", "FakeChannel", "RecordedExchange",
    "SessionTranscript", "UnrecordedCommand", "make_env_block", "parse_agi_args", "recorded_channels",
    "recorded_forms", "run_session",
]  # fmt: skip

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk-22.10.1"
VICIDIAL_DIR = FIXTURES / "vicidial"
AGI_DIR = FIXTURES / "agi"

REPLY_510 = "510 Invalid or unknown command"
REPLY_511 = "511 Command Not Permitted on a dead channel or intercept routine"
#: What Asterisk 22.10.1 answers a wrong argument count (lab_agi_command_responses.txt).
REPLY_520 = "520 Invalid command syntax.  Proper usage not available."


class UnrecordedCommand(AssertionError):
    """The fake was asked an AGI command whose reply no recording of a real Asterisk shows."""

# Commands res_agi.c marks as allowed on a dead channel (the last field of its command table).
_DEAD_OK = {
    ("GET", "VARIABLE"), ("GET", "FULL"), ("SET", "VARIABLE"), ("VERBOSE",), ("NOOP",), ("EXEC",),
    ("DATABASE", "GET"), ("DATABASE", "PUT"), ("DATABASE", "DEL"), ("DATABASE", "DELTREE"),
    ("ASYNCAGI", "BREAK"),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# The channel


@dataclass
class FakeChannel:
    """A channel as Asterisk would present it to one AGI() call.

    ``variables`` maps names as written in ``GET VARIABLE`` (``DIALSTATUS``, ``CALLERID(num)``,
    ``HANGUPCAUSE(PJSIP/1011-00000002,tech)``) to values; a missing name is unset.
    ``hangup_before_command`` is where the recording had its unsolicited ``HANGUP`` line: ``0``
    right after the block, ``N`` before the reply of the Nth command (1-based), None: no hangup.
    """

    name: str
    env_block: bytes
    variables: dict[str, str] = field(default_factory=dict)
    dead: bool = False
    exchanges: list[RecordedExchange] = field(default_factory=list)
    hangup_before_command: int | None = None
    database: dict[tuple[str, str], str] = field(default_factory=dict)
    hangup_requested: bool = False

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_recording(cls, path: str | Path) -> FakeChannel:
        """A channel from a ``vicidial/NN_*_agiK_*.txt`` capture (block from its ``.env.raw``)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        block_lines, exchanges, hangup_at = parse_capture(text)
        raw = path.with_name(path.name.removesuffix(".txt") + ".env.raw")
        if raw.exists():
            env_block = raw.read_bytes()
        else:
            env_block = "".join(f"{line}\n" for line in block_lines).encode("utf-8") + b"\n"
        return cls._from_parts(path.stem, env_block, exchanges, hangup_at)

    @classmethod
    def agi_sessions(cls, responses: str | Path = AGI_DIR / "agi_command_responses.txt") -> list[FakeChannel]:
        """The sessions of ``agi/agi_command_responses.txt``, each with its ``agi_block_<name>.txt``."""
        responses = Path(responses)
        channels = []
        for name, exchanges, hangup_at in parse_responses(responses.read_text(encoding="utf-8")):
            env_block = (responses.parent / f"agi_block_{name}.txt").read_bytes()
            channels.append(cls._from_parts(name, env_block, exchanges, hangup_at))
        return channels

    @classmethod
    def synthetic(
        cls,
        variables: Mapping[str, str] | None = None,
        *,
        script: str = "call_log",
        args: Iterable[str] = (),
        uniqueid: str = "1795237838.1",
        linkedid: str | None = None,
        channel: str = "PJSIP/1010-00000001",
        callerid: str = "1010",
        calleridname: str = "Ext 1010",
        extension: str = "915555550001",
        context: str = "vicilab-out",
        priority: str = "1",
        dnid: str = "unknown",
        server: str = "127.0.0.1:4573",
        env: Mapping[str, str] | None = None,
        dead: bool | None = None,
        name: str = "synthetic",
    ) -> FakeChannel:
        """A channel for a scenario not in the recordings.

        The block has Asterisk 22's fields and order; ``env`` overrides or adds fields (keys without
        ``agi_``). Builtins (CHANNEL, UNIQUEID, EXTEN, CONTEXT, PRIORITY, CALLERID(num|name),
        CHANNEL(linkedid), CDR(linkedid)) follow the block; ``variables`` add to or override them.
        ``dead`` defaults to True in the ``h`` extension, where AGI runs on a hung-up channel.
        """
        fields = {
            "network": "yes", "network_script": script, "request": f"agi://{server}/{script}",
            "channel": channel, "language": "en", "type": channel.split("/", 1)[0],
            "uniqueid": uniqueid, "version": "22.10.1", "callerid": callerid,
            "calleridname": calleridname, "callingpres": "0", "callingani2": "0", "callington": "0",
            "callingtns": "0", "dnid": dnid, "rdnis": "unknown", "context": context,
            "extension": extension, "priority": priority, "enhanced": "0.0", "accountcode": "",
            "threadid": "140408407586496",
        }  # fmt: skip
        for i, arg in enumerate(args, 1):
            fields[f"arg_{i}"] = arg
        fields.update(env or {})
        fake = cls(name=name, env_block=make_env_block(fields))
        fake.variables = _builtins(fake.env)
        link = linkedid or uniqueid
        fake.variables.update({"CHANNEL(linkedid)": link, "CDR(linkedid)": link})
        fake.variables.update(variables or {})
        fake.dead = extension == "h" if dead is None else dead
        return fake

    @classmethod
    def _from_parts(
        cls, name: str, env_block: bytes, exchanges: list[RecordedExchange], hangup_at: int | None
    ) -> FakeChannel:
        fake = cls(name=name, env_block=env_block, exchanges=exchanges, hangup_before_command=hangup_at)
        fake.variables = derive_variables(exchanges, _builtins(fake.env))
        fake.dead = fake.env.get("extension") == "h"
        return fake

    def copy(self) -> FakeChannel:
        return copy.deepcopy(self)

    # -- views ---------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The block as a dict, keys without the ``agi_`` prefix."""
        env: dict[str, str] = {}
        for line in self.env_block.decode("utf-8", "replace").split("\n"):
            key, sep, value = line.partition(": ")
            if sep and key.startswith("agi_"):
                env[key[4:]] = value
            elif line.endswith(":") and line.startswith("agi_"):
                env[line[4:-1]] = ""
        return env

    # -- Asterisk's behaviour ------------------------------------------------------------------

    def expand(self, text: str) -> str:
        """``${...}`` substitution from this channel's variables (see `agi_rules.expand`)."""
        return expand(text, self.variables)

    def answer(self, line: str) -> list[str]:
        """The reply lines (without ``\\n``) Asterisk sends for one command; updates the channel."""
        argv = parse_agi_args(line)
        words = [a.upper() for a in argv]
        key = _command_key(words)
        dead = self.dead
        if key is None:
            lines = [REPLY_510]
        elif dead and key not in _DEAD_OK:
            lines = [REPLY_511]
        else:
            lines = self._run(key, argv)
        form = reply_form("\n".join(lines))
        allowed = recorded_forms().get((form_key(words), dead), set())
        if form not in allowed:
            state = "dead" if dead else "live"
            raise UnrecordedCommand(f"no recording of Asterisk answering {line!r} with {form!r} on a {state} "
                                    f"channel (recorded: {sorted(allowed) or 'nothing'})")
        return lines

    def _run(self, key: tuple[str, ...], argv: list[str]) -> list[str]:
        argc = len(argv)
        if key == ("GET", "VARIABLE"):
            if argc != 3:
                return _usage(key)
            value = self.variables.get(argv[2])
            return ["200 result=0" if value is None else f"200 result=1 ({value})"]
        if key == ("GET", "FULL"):
            if argc not in (4, 5):
                return _usage(key)
            if argc == 5 and argv[4] != self.env.get("channel"):
                return ["200 result=0"]
            return [f"200 result=1 ({self.expand(argv[3])})"]
        if key == ("SET", "VARIABLE"):
            if argc != 4:
                return _usage(key)
            self.variables[argv[2]] = argv[3]
            return ["200 result=1"]
        if key == ("VERBOSE",):
            return ["200 result=1"]
        if key == ("NOOP",):
            return ["200 result=0"]
        if key == ("ANSWER",):
            return ["200 result=0"]
        if key == ("CHANNEL", "STATUS"):
            return ["200 result=6"]
        if key == ("HANGUP",):
            self.dead = self.hangup_requested = True
            return ["200 result=1"]
        if key == ("STREAM", "FILE"):
            return ["200 result=0 endpos=0"]
        if key == ("GET", "DATA"):
            return ["200 result= (timeout)"]
        if key == ("WAIT", "FOR", "DIGIT"):
            return ["200 result=0"]
        if key == ("GOSUB",):
            return ["100 result=0 Trying...", "200 result=0 Gosub complete"]
        if key == ("EXEC",):
            return [self._exec(argv[1] if argc > 1 else "", argv[2] if argc > 2 else "")]
        return self._database(key, argv)

    def _exec(self, app: str, data: str) -> str:
        app = app.lower()
        if app == "set":
            name, sep, value = data.partition("=")
            if sep:
                self.variables[name] = value
            return "200 result=0"
        if app == "mset":  # recorded: asterisk-22.10.1/did_select/mset_agi.log
            for pair in data.split(","):
                name, sep, value = pair.partition("=")
                if sep:
                    self.variables[name] = value.strip('"')
            return "200 result=0"
        return "200 result=0" if app in ("noop", "verbose", "log", "wait", "playback") else "200 result=-2"

    def _database(self, key: tuple[str, ...], argv: list[str]) -> list[str]:
        if key == ("DATABASE", "GET") and len(argv) == 4:
            value = self.database.get((argv[2], argv[3]))
            return ["200 result=0" if value is None else f"200 result=1 ({value})"]
        if key == ("DATABASE", "PUT") and len(argv) == 5:
            self.database[(argv[2], argv[3])] = argv[4]
            return ["200 result=1"]
        if key == ("DATABASE", "DEL") and len(argv) == 4:
            return ["200 result=1" if self.database.pop((argv[2], argv[3]), None) is not None else "200 result=0"]
        return ["520 Invalid command syntax.  Proper usage not available."]


def _command_key(words: list[str]) -> tuple[str, ...] | None:
    known = (
        ("GET", "FULL", "VARIABLE"), ("GET", "VARIABLE"), ("SET", "VARIABLE"), ("VERBOSE",),
        ("NOOP",), ("ANSWER",), ("CHANNEL", "STATUS"), ("HANGUP",), ("GOSUB",), ("EXEC",),
        ("DATABASE", "GET"), ("DATABASE", "PUT"), ("DATABASE", "DEL"), ("DATABASE", "DELTREE"),
        ("STREAM", "FILE"), ("GET", "DATA"), ("WAIT", "FOR", "DIGIT"), ("ASYNCAGI", "BREAK"),
    )  # fmt: skip
    for words_ in known:
        if tuple(words[: len(words_)]) == words_:
            return ("GET", "FULL") if words_ == ("GET", "FULL", "VARIABLE") else words_
    return None


def _usage(key: tuple[str, ...]) -> list[str]:
    return [REPLY_520]


def form_key(words: list[str]) -> tuple[str, ...]:
    """The command as res_agi.c's table names it (``("GET", "FULL")``), or ``("?", first word)``."""
    key = _command_key(words)
    return key if key is not None else ("?", words[0] if words else "")


def reply_form(reply: str) -> str:
    """A reply with the data in parentheses of a ``200`` line blanked: ``200 result=1 (...)``."""
    return re.sub(r"^(200 result=\S*) \(.*\)$", r"\1 (...)", reply, flags=re.S)


@functools.cache
def recorded_forms() -> dict[tuple[tuple[str, ...], bool], frozenset[str]]:
    """(command key, dead channel) -> the reply forms a real Asterisk 22.10.1 gave, from every recording."""
    forms: dict[tuple[tuple[str, ...], bool], set[str]] = {}
    for chan in recorded_channels():
        h = chan.env.get("extension") == "h"
        for exchange in chan.exchanges:
            words = [a.upper() for a in parse_agi_args(exchange.command)]
            dead = h or exchange.after_hangup
            forms.setdefault((form_key(words), dead), set()).add(reply_form(exchange.reply))
    return {k: frozenset(v) for k, v in forms.items()}


def make_env_block(fields: Mapping[str, str]) -> bytes:
    """An ``agi_*`` block from fields (keys without ``agi_``), in the given order, ``\\n`` only."""
    return "".join(f"agi_{k}: {v}\n" for k, v in fields.items()).encode("utf-8") + b"\n"


def _builtins(env: Mapping[str, str]) -> dict[str, str]:
    out = {
        "CHANNEL": env.get("channel", ""),
        "UNIQUEID": env.get("uniqueid", ""),
        "EXTEN": env.get("extension", ""),
        "CONTEXT": env.get("context", ""),
        "PRIORITY": env.get("priority", ""),
        "LANGUAGE()": env.get("language", ""),
        "CHANNEL(language)": env.get("language", ""),
    }
    for var, key in (("CALLERID(num)", "callerid"), ("CALLERID(name)", "calleridname")):
        if env.get(key, "unknown") != "unknown":
            out[var] = env[key]
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------------------------------------
# Recordings


def recorded_channels() -> list[FakeChannel]:
    """Every recorded AGI session: the VICIdial-style captures, the plain ``agi/`` sessions and the lab's."""
    captures = [FakeChannel.from_recording(p) for p in sorted(VICIDIAL_DIR.glob("*_agi*.txt"))]
    lab = [FakeChannel.agi_sessions(AGI_DIR / name)
           for name in ("lab_agi_command_responses.txt", "lab_agi_mset_responses.txt")]
    return captures + FakeChannel.agi_sessions() + [chan for sessions in lab for chan in sessions]


# ---------------------------------------------------------------------------------------------
# Playing a session against a server


@dataclass
class SessionTranscript:
    """What happened on one connection, seen from the Asterisk side.

    ``replies[i]`` answers ``commands[i]`` (multi-line replies joined with ``\\n``);
    ``variables_set`` holds every ``SET VARIABLE`` in order of arrival (last value wins);
    ``duration`` runs from connect to the server's close (or to the timeout / the fake's own
    close when ``closed_by_server`` is False).
    """

    commands: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    variables_set: dict[str, str] = field(default_factory=dict)
    closed_by_server: bool = False
    duration: float = 0.0
    hangup_sent: bool = False
    error: str | None = None
    channel: FakeChannel | None = None

    @property
    def result(self) -> str | None:
        """The ``TELEPHONYD_RESULT`` the server set, if any."""
        return self.variables_set.get("TELEPHONYD_RESULT")


async def run_session(
    host: str,
    port: int,
    channel: FakeChannel,
    *,
    hangup_before_command: int | None | Literal["recorded"] = "recorded",
    block: bytes | None = None,
    timeout: float = 10.0,
    stop_after_commands: int | None = None,
) -> SessionTranscript:
    """Play one AGI() call of ``channel`` against the FastAGI server at ``host:port``.

    ``hangup_before_command``: ``"recorded"`` (default) pushes ``HANGUP\\n`` where the recording had
    it; ``0`` right after the block; ``N`` just before the reply of the Nth command (1-based);
    None never. After the hangup the channel is dead (511 for most commands). ``block`` replaces
    the channel's block bytes. ``stop_after_commands`` makes the fake close the socket itself after
    answering that many commands (a channel that vanishes). The channel is copied: the caller's
    object is not changed; the copy, with its final variables, is ``transcript.channel``.
    """
    chan = channel.copy()
    hangup_at = chan.hangup_before_command if hangup_before_command == "recorded" else hangup_before_command
    transcript = SessionTranscript(channel=chan)
    started = time.monotonic()
    deadline = started + timeout
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(chan.env_block if block is None else block)
        if hangup_at == 0:
            _push_hangup(writer, chan, transcript)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            line = await asyncio.wait_for(reader.readline(), remaining)
            if not line.endswith(b"\n"):
                transcript.closed_by_server = True
                if line:
                    transcript.commands.append(line.decode("utf-8", "replace"))
                break
            command = line[:-1].decode("utf-8", "replace")
            transcript.commands.append(command)
            if hangup_at is not None and len(transcript.commands) == hangup_at:
                _push_hangup(writer, chan, transcript)
            lines = chan.answer(command)
            writer.write(("\n".join(lines) + "\n").encode("utf-8"))
            transcript.replies.append("\n".join(lines))
            if chan.hangup_requested:  # the HANGUP command: Asterisk then sends its own HANGUP line
                chan.hangup_requested = False
                _push_hangup(writer, chan, transcript)
            argv = parse_agi_args(command)
            if [a.upper() for a in argv[:2]] == ["SET", "VARIABLE"] and len(argv) == 4:
                transcript.variables_set[argv[2]] = argv[3]
            if stop_after_commands is not None and len(transcript.commands) >= stop_after_commands:
                break
    except TimeoutError:
        transcript.error = "timeout"
    except (ConnectionResetError, BrokenPipeError) as exc:
        transcript.closed_by_server = True
        transcript.error = type(exc).__name__
    finally:
        transcript.duration = time.monotonic() - started
        writer.close()
    return transcript


def _push_hangup(writer: asyncio.StreamWriter, chan: FakeChannel, transcript: SessionTranscript) -> None:
    writer.write(b"HANGUP\n")
    chan.dead = True
    transcript.hangup_sent = True
