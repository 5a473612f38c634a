"""Readers of the FastAGI recordings of a real Asterisk 22.10.1 (tests/fixtures/asterisk-22.10.1/).

- ``vicidial/NN_*_agiK_*.txt``: ``>>> `` command lines, ``<<< `` lines from Asterisk, ``### ``
  comments; the block itself is in the sibling ``.env.raw`` (byte-exact).
- ``agi/agi_command_responses.txt``: ``=== session N (name)`` sections with ``### >>> SENT >>> b'..'``,
  ``### <<< RESPONSE <<< b'..'`` and ``### <<< UNSOLICITED <<< b'HANGUP\\n'`` lines; the block of
  each is ``agi/agi_block_<name>.txt``.

`derive_variables` turns the recorded answers into the channel's variables before the session.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from .agi_rules import expand, parse_agi_args, single_token


@dataclass(frozen=True)
class RecordedExchange:
    """One command and the reply (lines joined with ``\\n``) the real Asterisk gave."""

    command: str
    reply: str
    after_hangup: bool = False


def _is_final(line: str) -> bool:
    return len(line) >= 3 and line[:3].isdigit() and line[:3] != "100" and (len(line) == 3 or line[3] == " ")


def parse_capture(text: str) -> tuple[list[str], list[RecordedExchange], int | None]:
    """Block lines, exchanges and the HANGUP position of a ``vicidial/*.txt`` capture.

    The HANGUP position is 0 when it came before any command, N when it came before the reply to
    (or the sending of) the Nth command, None when there was none.
    """
    block: list[str] = []
    exchanges: list[RecordedExchange] = []
    hangup_at: int | None = None
    section = ""
    command: str | None = None
    reply: list[str] = []
    for line in text.split("\n"):
        if line.startswith("### ---- agi_ block"):
            section = "block"
        elif line.startswith("### ---- commands"):
            section = "commands"
        elif line.startswith("### ---- timeline"):
            break
        elif section == "block" and line.startswith("<<< ") and line[4:].startswith("agi_"):
            block.append(line[4:])
        elif section == "commands" and line.startswith(">>> "):
            command, reply = line[4:], []
        elif section == "commands" and line.startswith("<<< "):
            payload = line[4:]
            if payload == "HANGUP":
                hangup_at = len(exchanges) + (1 if command is not None else 0)
                continue
            reply.append(payload)
            multi = reply[0][:3] if reply[0][3:4] == "-" else None
            final = payload.startswith(multi + " ") if multi else _is_final(payload)
            if command is not None and final:
                exchanges.append(RecordedExchange(command, "\n".join(reply), hangup_at is not None))
                command, reply = None, []
    return block, exchanges, hangup_at


def parse_responses(text: str) -> list[tuple[str, list[RecordedExchange], int | None]]:
    """Sessions of ``agi/agi_command_responses.txt``: (name, exchanges, HANGUP position)."""
    sessions: list[tuple[str, list[RecordedExchange], int | None]] = []
    for chunk in text.split("=== session ")[1:]:
        header, _, body = chunk.partition("\n")
        name = header.split("(", 1)[1].split(")", 1)[0]
        exchanges: list[RecordedExchange] = []
        hangup_at: int | None = None
        command: str | None = None
        for line in body.split("\n"):
            if not line.startswith("### ") or " b'" not in line:
                continue
            payload = ast.literal_eval(line[line.index(" b'") + 1 :]).decode("utf-8")
            if ">>> SENT" in line:
                command = payload.rstrip("\n")
            elif "UNSOLICITED" in line and payload == "HANGUP\n":
                hangup_at = len(exchanges) + 1
            elif "RESPONSE" in line and command is not None:
                exchanges.append(RecordedExchange(command, payload.rstrip("\n"), hangup_at is not None))
                command = None
        sessions.append((name, exchanges, hangup_at))
    return sessions


def _split_reply(reply: str) -> tuple[str, str | None]:
    """(result, data) of a ``200 result=...`` reply."""
    if not reply.startswith("200 result="):
        return "", None
    result, _, after = reply[len("200 result=") :].partition(" ")
    if after.startswith("(") and ")" in after:
        return result, after[1 : after.rindex(")")]
    return result, None


def derive_variables(exchanges: list[RecordedExchange], base: Mapping[str, str]) -> dict[str, str]:
    """The channel's variables before the session: ``base`` (builtins from the block) updated by
    the recorded answers.

    ``GET VARIABLE X`` -> ``200 result=1 (v)`` sets X, ``200 result=0`` removes it, unless the
    session itself SET X earlier. A whole-expression ``GET FULL VARIABLE ${NAME}`` tells the value
    of NAME once its inner ``${}`` are expanded (``HANGUPCAUSE(PJSIP/1011-00000002,tech)``).
    """
    variables = dict(base)
    set_by_session: set[str] = set()
    fulls: list[tuple[str, str]] = []
    for ex in exchanges:
        argv = parse_agi_args(ex.command)
        words = [a.upper() for a in argv]
        if words[:2] == ["SET", "VARIABLE"] and len(argv) >= 3:
            set_by_session.add(argv[2])
        elif words[:2] == ["GET", "VARIABLE"] and len(argv) == 3 and argv[2] not in set_by_session:
            result, data = _split_reply(ex.reply)
            if result == "1":
                variables[argv[2]] = data or ""
            elif ex.reply == "200 result=0":
                variables.pop(argv[2], None)
        elif words[:3] == ["GET", "FULL", "VARIABLE"] and len(argv) == 4:
            result, data = _split_reply(ex.reply)
            if result == "1" and data:
                fulls.append((argv[3], data))
    for expr, data in fulls:
        exprs, values = expr.split("\x1f"), data.split("\x1f")  # the daemon's joined form
        if len(exprs) != len(values):
            exprs, values = [expr], [data]
        for part, value in zip(exprs, values):
            inner = single_token(part)
            if inner is None:
                continue
            name = expand(inner, variables) if "${" in inner else inner
            if ":" not in name and name not in variables and value:
                variables[name] = value
    return variables
