"""Pure resolution of one call leg's outcome from everything the handler gathered.

Sources, in order of trust for each field:

1. what the dialplan handed over at hangup (VICIdial's HVcauses script name, or the arguments),
   captured when the line ran;
2. the channel variables read during the end-stage session (one ``GET FULL VARIABLE``);
3. what the start stage remembered (campaign, agent, lead, list, dialed number);
4. fallbacks: the ``agi_*`` environment, VICIdial's caller code, configured defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import constants as c
from .hangup_line import HangupFields, lead_from_caller_code, sip_cause


@dataclass(frozen=True, slots=True)
class StartRecord:
    """What the start stage remembers for the end stage of the same uniqueid.

    ``started_at`` is the handler clock's epoch seconds; the other fields are ``''`` when unknown.
    """

    dialed_number: str
    started_at: float
    campaign: str = ""
    agent: str = ""
    lead: str = ""
    list_id: str = ""
    customer_phone: str = ""


@dataclass(frozen=True, slots=True)
class VariableNames:
    """The configured channel variables per field (``call_log.variables``), first non-empty wins."""

    campaign: tuple[str, ...] = ()
    agent: tuple[str, ...] = ()
    lead: tuple[str, ...] = ()
    list_id: tuple[str, ...] = ()
    did: tuple[str, ...] = ()
    customer_phone: tuple[str, ...] = ()

    def start_stage(self) -> tuple[str, ...]:
        """Names read by the start stage (the DID is chosen later, just before Dial)."""
        return _unique(self.campaign + self.agent + self.lead + self.list_id + self.customer_phone)

    def all(self) -> tuple[str, ...]:
        return _unique(self.start_stage() + self.did)


#: Values read by every end stage besides the configured ones.
END_STAGE_VALUES: tuple[str, ...] = (
    c.DIALSTATUS,
    c.HANGUPCAUSE,
    c.DIALEDTIME,
    c.ANSWEREDTIME,
    c.TECH_CAUSE_EXPR,
    c.AMDSTATUS,
    c.AMDCAUSE,
    c.CALLERID_NUM,
    c.CALLERID_NAME,
    c.CHANNEL_LINKEDID,
    c.CHANNEL_HANGUPSOURCE,
)


def end_stage_names(variables: VariableNames) -> tuple[str, ...]:
    return _unique(END_STAGE_VALUES + variables.all())


@dataclass(slots=True)
class CallOutcome:
    """One call leg's outcome, typed; `build_payload` turns it into the DID Optimizer's fields."""

    uniqueid: str
    linkedid: str
    did: str
    customer_phone: str
    campaign: str
    dial_status: str
    answered_time_s: int
    dialed_time_s: int
    hangup_cause: int
    hangup_source: str
    agent: str
    lead: str
    list_id: str
    amd_status: str
    amd_cause: str
    sip_cause: int | None
    sip_reason: str
    #: Where ``did`` came from: the channel variable's name (``OPTIMIZER_DID``, ``DID_NUMBER``...),
    #: ``CALLERID(num)`` when no DID variable was set, ``none`` when nothing was.
    did_source: str = "none"


def first_of(values: Mapping[str, str], names: Sequence[str]) -> str:
    """The first non-empty value among ``names`` (stripped), ``''`` when none."""
    for name in names:
        value = values.get(name, "").strip()
        if value:
            return value
    return ""


def first_named(values: Mapping[str, str], names: Sequence[str]) -> tuple[str, str]:
    """``(name, value)`` of the first non-empty value among ``names``, ``('', '')`` when none."""
    for name in names:
        value = values.get(name, "").strip()
        if value:
            return name, value
    return "", ""


def did_of(values: Mapping[str, str], names: Sequence[str]) -> tuple[str, str]:
    """The DID presented and where it came from: the first DID variable set, else the caller id
    number (``CALLERID(num)``), else ``('', 'none')``."""
    name, did = first_named(values, names)
    if did:
        return did, name
    callerid = values.get(c.CALLERID_NUM, "").strip()
    return (callerid, c.CALLERID_NUM) if callerid else ("", "none")


def to_int(text: str) -> int:
    """A whole number from a channel variable: ``''`` and garbage give 0, ``'3.9'`` gives 3."""
    match = re.match(r"\s*(-?[0-9]+)", text)
    return int(match.group(1)) if match else 0


_DIAL_STRING = re.compile(r"[0-9*#+]+")


def known(env_value: str) -> str:
    """An ``agi_*`` value, ``''`` for Asterisk's ``unknown`` placeholder."""
    value = env_value.strip()
    return "" if value == c.ENV_UNKNOWN else value


def dialed_number(env: Mapping[str, str]) -> str:
    """The number the start stage sees being dialed: the extension, else the DNID.

    The outbound extension (``915555550001``) is the dial string VICIdial built, prefix included;
    it is reported as dialed, never re-parsed. A non-numeric extension (``s`` in a macro or gosub)
    gives way to ``agi_dnid``.
    """
    extension = env.get(c.ENV_EXTENSION, "").strip()
    if _DIAL_STRING.fullmatch(extension):
        return extension
    return known(env.get(c.ENV_DNID, ""))


#: ``Local/<exten>@<context>-<sequence>;<half>``: Asterisk's name of a Local channel (22.10.1, core_unreal).
_LOCAL_CHANNEL = re.compile(r"Local/([0-9*#+]+)@[^;]*;[12]")


def local_channel_number(env: Mapping[str, str]) -> str:
    """The extension a Local channel was created for (``Local/915552345678@default-0000001c;2`` gives
    ``915552345678``), else ``''``.

    VICIdial places every outbound call as an AMI Originate of ``Local/<dial string>@<context>``, so in
    the carrier entry's ``h`` extension, with no start stage on this node, the channel's name is the
    only place the dialed number is left: ``agi_dnid`` is ``unknown`` and ``agi_extension`` is ``h``
    (recorded on Asterisk 22.10.1, tests/fixtures/asterisk-22.10.1/vicidial-beside/).
    """
    match = _LOCAL_CHANNEL.fullmatch(env.get(c.ENV_CHANNEL, "").strip())
    return match.group(1) if match else ""


def resolve_outcome(
    *,
    env: Mapping[str, str],
    line: HangupFields,
    values: Mapping[str, str],
    start: StartRecord | None,
    variables: VariableNames,
    default_campaign: str,
) -> CallOutcome | None:
    """The outcome of this leg, or None when it has no dial status (nothing was dialed on it).

    ``env`` is the ``agi_*`` block (no prefix), ``line`` the dialplan's hand-over, ``values`` the
    channel values keyed by variable name or expression (``''`` for unset), ``start`` what the
    start stage remembered (None on a miss: other node, restart, TTL).
    """
    dial_status = (line.dial_status or values.get(c.DIALSTATUS, "")).strip().upper()
    if not dial_status:
        return None
    uniqueid = env.get(c.ENV_UNIQUEID, "").strip()
    start = start or StartRecord(dialed_number="", started_at=0.0)
    sip_status, sip_reason = sip_cause(line.tech_cause or values.get(c.TECH_CAUSE_EXPR, ""))
    caller_name = values.get(c.CALLERID_NAME, "") or known(env.get(c.ENV_CALLERIDNAME, ""))
    did, did_source = did_of(values, variables.did)
    return CallOutcome(
        uniqueid=uniqueid,
        linkedid=values.get(c.CHANNEL_LINKEDID, "").strip() or uniqueid,
        did=did,
        customer_phone=(
            first_of(values, variables.customer_phone)
            or start.customer_phone
            or start.dialed_number
            or known(env.get(c.ENV_DNID, ""))
            or local_channel_number(env)
        ),
        campaign=first_of(values, variables.campaign) or start.campaign or default_campaign,
        dial_status=dial_status,
        answered_time_s=max(0, to_int(line.answered_time or values.get(c.ANSWEREDTIME, ""))),
        dialed_time_s=max(0, to_int(line.dialed_time or values.get(c.DIALEDTIME, ""))),
        hangup_cause=max(0, to_int(line.hangup_cause or values.get(c.HANGUPCAUSE, ""))),
        hangup_source=values.get(c.CHANNEL_HANGUPSOURCE, "").strip(),
        agent=first_of(values, variables.agent) or start.agent or c.UNKNOWN_AGENT,
        lead=first_of(values, variables.lead) or start.lead or lead_from_caller_code(caller_name),
        list_id=first_of(values, variables.list_id) or start.list_id,
        amd_status=values.get(c.AMDSTATUS, "").strip(),
        amd_cause=values.get(c.AMDCAUSE, "").strip(),
        sip_cause=sip_status,
        sip_reason=sip_reason,
        did_source=did_source,
    )


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n in names if n))
