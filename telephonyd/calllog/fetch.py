"""Reading many channel values in one AGI round trip.

Every AGI command is one round trip to Asterisk while the call's thread waits, so the handler
reads all it needs with a single ``GET FULL VARIABLE`` whose expression joins ``${...}`` parts
with the ASCII unit separator (0x1F)::

    GET FULL VARIABLE "${DIALSTATUS}\\x1f${HANGUPCAUSE}\\x1f${CALLERID(num)}\\x1f..."

Why this is sound (res_agi.c, ``handle_getvariablefull``, Asterisk 1.6 to 22):

* it runs ``pbx_substitute_variables_helper`` over the whole argument, so variables and functions
  (``CALLERID(num)``, ``CHANNEL(linkedid)``, nested ``HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)``)
  expand in one go, and it is allowed on a dead channel (the ``h`` extension);
* it always answers ``200 result=1 (<expansion>)`` for the current channel; an unset variable
  expands to nothing, exactly like a set-but-empty one. No field read here needs to tell them
  apart (the recordings of Asterisk 22.10.1 show ``result=0`` vs ``result=1 ()`` only for
  ``GET VARIABLE``);
* Asterisk splits a command line into arguments on spaces and tabs, honouring double quotes and
  backslash escapes: the expression holds neither (variable names are validated by the config),
  and 0x1F is not whitespace to it, nor a line break to Python's ``str.splitlines`` (unlike
  0x1C-0x1E), nor anything a channel variable plausibly holds;
* the expansion is written from a 4096-byte buffer, so names are read in chunks whose
  expression stays short; a value holding the separator, or a truncated expansion, changes the
  part count, which is detected.

When the reply is not ``200 result=1`` (an old or odd AGI server) or the parts do not add up,
`fetch_values` falls back to one ``GET VARIABLE`` per name (the tech cause then takes two: the
dialed leg's name from ``HANGUPCAUSE_KEYS()``, then its cause).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import TelephonydError
from . import constants as c

log = logging.getLogger(__name__)

#: ASCII unit separator between the parts of one expression.
SEPARATOR = "\x1f"
#: Longest expression sent in one command (far below AGI's line limit and the 4096-byte expansion).
MAX_EXPRESSION_CHARS = 1000

#: Errors that mean the AGI connection itself failed (stop issuing commands).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (TelephonydError, OSError, EOFError, TimeoutError)


class AGIReplyLike(Protocol):
    code: int
    result: str | None
    data: str | None


class AGICommands(Protocol):
    """The part of the FastAGI session this module uses."""

    async def command(self, line: str) -> Any: ...

    async def get_variable(self, name: str) -> str | None: ...


@dataclass(slots=True)
class Fetched:
    """Values keyed by name or expression (``''`` for unset or empty), and how they were read."""

    values: dict[str, str] = field(default_factory=dict)
    commands: int = 0
    method: str = "full"  # 'full' | 'fallback' | 'failed'
    error: str | None = None


def expression(names: Sequence[str]) -> str:
    """``${A}<US>${B}...`` for ``names`` (each a variable, a function call or an expression)."""
    return SEPARATOR.join("${" + name + "}" for name in names)


def command_line(names: Sequence[str]) -> str:
    return f'GET FULL VARIABLE "{expression(names)}"'


def chunks(names: Sequence[str], max_chars: int = MAX_EXPRESSION_CHARS) -> list[list[str]]:
    """``names`` split so that each chunk's expression is at most ``max_chars`` (one name minimum)."""
    out: list[list[str]] = []
    current: list[str] = []
    size = 0
    for name in names:
        cost = len(name) + 3 + (1 if current else 0)
        if current and size + cost > max_chars:
            out.append(current)
            current, size = [], 0
            cost = len(name) + 3
        current.append(name)
        size += cost
    if current:
        out.append(current)
    return out


def split_reply(names: Sequence[str], reply: AGIReplyLike) -> dict[str, str] | None:
    """The values in a ``GET FULL VARIABLE`` reply, or None when it cannot be trusted."""
    if reply.code != 200 or (reply.result or "").strip() != "1":
        return None
    parts = (reply.data or "").split(SEPARATOR)
    if len(parts) != len(names):
        return None
    return dict(zip(names, parts))


class FetchPlan:
    """The command lines that read ``names``, built once (the names come from the config)."""

    __slots__ = ("names", "steps")

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.steps: tuple[tuple[tuple[str, ...], str], ...] = tuple(
            (tuple(chunk), command_line(chunk)) for chunk in chunks(self.names)
        )


async def fetch_values(session: AGICommands, names: Sequence[str] | FetchPlan, *, fallback: bool = True) -> Fetched:
    """Read ``names`` with as few commands as possible (see the module docstring).

    With ``fallback=False`` a reply that cannot be used leaves the values empty instead of
    costing one command per name. Connection failures never raise: the values read so far are
    returned with ``method='failed'`` and the error text, so an end stage can still report what
    the dialplan handed over in the script name.
    """
    plan = names if isinstance(names, FetchPlan) else FetchPlan(names)
    names = plan.names
    fetched = Fetched()
    for chunk, line in plan.steps:
        try:
            reply = await session.command(line)
        except TRANSPORT_ERRORS as exc:
            fetched.method, fetched.error = "failed", f"{type(exc).__name__}: {exc}"
            return fetched
        fetched.commands += 1
        values = split_reply(chunk, reply)
        if values is None:
            log.info(
                "GET FULL VARIABLE reply not usable, reading variables one by one",
                extra={"agi_code": getattr(reply, "code", None)},
            )
            if not fallback:
                fetched.method = "failed"
                return fetched
            fetched.method = "fallback"
            return await _one_by_one(session, names, fetched)
        fetched.values.update(values)
    return fetched


async def _one_by_one(session: AGICommands, names: Sequence[str], fetched: Fetched) -> Fetched:
    try:
        for name in names:
            if name in fetched.values:
                continue
            if name == c.TECH_CAUSE_EXPR:
                keys = await session.get_variable(c.HANGUPCAUSE_KEYS) or ""
                fetched.commands += 1
                leg = keys.split(",")[0].strip()
                value = ""
                if leg:
                    value = await session.get_variable(c.tech_cause_of(leg)) or ""
                    fetched.commands += 1
            else:
                value = await session.get_variable(name) or ""
                fetched.commands += 1
            fetched.values[name] = value
    except TRANSPORT_ERRORS as exc:
        fetched.method, fetched.error = "failed", f"{type(exc).__name__}: {exc}"
    return fetched
