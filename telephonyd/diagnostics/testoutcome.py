"""``telephonyd test-outcome``: one synthetic call through the running daemon's FastAGI ``call_log``.

`SyntheticChannel` plays Asterisk's side of two ``AGI(agi://.../call_log)`` calls of one channel:
the start stage (the dialed extension, priority 1) and the end stage (extension ``h``, arguments
``ANSWER,16``). It answers the commands the handler sends as Asterisk 22.10.1 does (res_agi.c; the
forms are those of tests/fixtures/asterisk-22.10.1/agi and vicidial/): ``GET VARIABLE X`` ->
``200 result=1 (value)`` or ``200 result=0`` when unset, ``GET FULL VARIABLE expr`` -> ``200
result=1 (expansion)`` (unset parts expand to nothing), ``SET VARIABLE``/``VERBOSE`` -> ``200
result=1``; any other command -> ``510 Invalid or unknown command`` (and it is reported).

The outcome is a real one: its row (key: the synthetic uniqueid) goes through the outbox to the DID
Optimizer like any call's; `follow` watches that row in the store until it is delivered or dead
(printing every state it passes) and explains a row still waiting with `telephonyd.diagnostics.why`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Seconds one AGI exchange (connect, a reply) may take.
IO_TIMEOUT_S = 5.0
_INNERMOST = re.compile(r"\$\{([^${}]*)\}")


def synthetic_uniqueid(now: float) -> str:
    """An Asterisk-shaped uniqueid (``<epoch s>.<sequence>``) no real channel of this second has."""
    return f"{int(now)}.{900000 + int(now * 1000) % 100000}"


@dataclass
class SyntheticChannel:
    """The variables of one outbound call as a VICIdial dialplan leaves them at hangup."""

    uniqueid: str
    number: str = "15555550100"
    did: str = "15555550199"
    campaign: str = "TESTOUTCOME"
    agent: str = "test"
    host: str = "127.0.0.1"
    port: int = 4573
    channel: str = field(default="")
    transcript: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.channel = self.channel or f"Local/test-outcome-{self.uniqueid}@telephonyd"

    def variables(self, end: bool) -> dict[str, str]:
        base = {"UNIQUEID": self.uniqueid, "CHANNEL": self.channel, "CALLERID(num)": self.did,
                "CALLERID(name)": "telephonyd test-outcome", "campaign_id": self.campaign, "agent": self.agent,
                "CHANNEL(linkedid)": self.uniqueid, "OPTIMIZER_DID": self.did, "CUSTOMER_PHONE": self.number}
        if end:
            base.update({"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "DIALEDTIME": "3", "ANSWEREDTIME": "2",
                         "HANGUPCAUSE_KEYS()": "PJSIP/test-00000001",
                         "HANGUPCAUSE(PJSIP/test-00000001,tech)": "SIP 200 OK",
                         "CHANNEL(hangupsource)": "PJSIP/test-00000001"})
        return base

    def block(self, end: bool) -> bytes:
        lines = {
            "network": "yes", "network_script": "call_log", "request": f"agi://{self.host}:{self.port}/call_log",
            "channel": self.channel, "language": "en", "type": "Local", "uniqueid": self.uniqueid,
            "version": "22.10.1", "callerid": self.did, "calleridname": "telephonyd test-outcome",
            "callingpres": "0", "callingani2": "0", "callington": "0", "callingtns": "0", "dnid": self.number,
            "rdnis": "unknown", "context": "telephonyd-test", "extension": "h" if end else self.number,
            "priority": "2" if end else "1", "enhanced": "0.0", "accountcode": "", "threadid": "1",
        }  # fmt: skip
        if end:
            lines.update({"arg_1": "ANSWER", "arg_2": "16"})
        return ("".join(f"agi_{k}: {v}\n" for k, v in lines.items()) + "\n").encode()

    def answer(self, command: str, end: bool) -> str:
        """Asterisk 22.10.1's reply to ``command`` on this channel (see the module docstring)."""
        values = self.variables(end)
        if command.startswith("GET FULL VARIABLE "):
            return f"200 result=1 ({expand(unquote(command[18:]), values)})"
        if command.startswith("GET VARIABLE "):
            name = unquote(command[13:])
            return f"200 result=1 ({values[name]})" if name in values else "200 result=0"
        if command.startswith(("SET VARIABLE ", "VERBOSE ")):
            return "200 result=1"
        return "510 Invalid or unknown command"

    async def session(self, end: bool) -> str:
        """Run one AGI() call against the daemon; returns ``TELEPHONYD_RESULT`` (or ``?``)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), IO_TIMEOUT_S)
        result = "?"
        try:
            writer.write(self.block(end))
            await writer.drain()
            while True:
                line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT_S)
                if not line:
                    return result
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                reply = self.answer(command, end)
                self.transcript.append(f">>> {command}\n<<< {reply}")
                match = re.match(r'SET VARIABLE TELEPHONYD_RESULT "?([A-Z_]+)', command)
                if match:
                    result = match.group(1)
                writer.write(reply.encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()


def unquote(argument: str) -> str:
    """One res_agi argument: a double-quoted one with ``\\"``/``\\\\`` escapes, or a bare word."""
    argument = argument.strip()
    if not argument.startswith('"'):
        return argument.split(" ", 1)[0]
    out, escaped = [], False
    for ch in argument[1:]:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            break
        else:
            out.append(ch)
    return "".join(out)


def expand(expression: str, values: dict[str, str]) -> str:
    """``${...}`` expanded innermost first, as pbx_substitute_variables_helper does; unset -> ''."""
    while True:
        expanded = _INNERMOST.sub(lambda m: values.get(m.group(1), ""), expression)
        if expanded == expression:
            return expanded
        expression = expanded


async def follow(read_row: Callable[[], Any], explain: Callable[[dict[str, Any]], list[str]],
                 say: Callable[[str], None], timeout_s: float, interval_s: float = 0.2) -> dict[str, Any] | None:
    """Poll ``read_row()`` (the outbox row as a dict, or None) until delivered or dead or
    ``timeout_s``; ``say`` each state change; returns the last row seen."""
    deadline = time.monotonic() + timeout_s
    last_state, row = None, None
    while True:
        row = await read_row()
        state = None if row is None else (row["state"], row["attempts"])
        if state != last_state:
            if row is None:
                say("outbox: no row yet")
            else:
                say(f"outbox: row {row['id']} {row['state']} (attempts {row['attempts']}, upstream status "
                    f"{row.get('last_status') or '-'}{', error: ' + row['last_error'] if row.get('last_error') else ''})")
            last_state = state
        if row is not None and row["state"] in ("delivered", "dead"):
            return row
        if time.monotonic() >= deadline:
            if row is not None:
                for line in explain(row):
                    say("  " + line)
            return row
        await asyncio.sleep(interval_s)
