"""Pure parsing of what a dialplan hangup line hands over in the AGI script name or arguments.

Two forms carry end-of-call values captured at the moment of hangup:

* VICIdial's ``h`` line (VICIdial ``extensions.conf``, unchanged since 2.x)::

      exten => h,1,AGI(agi://127.0.0.1:4577/call_log--HVcauses--PRI-----NODEBUG-----${HANGUPCAUSE}
               -----${DIALSTATUS}-----${DIALEDTIME}-----${ANSWEREDTIME}
               -----${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}))

  (one line in the real file). Asterisk's config parser strips only the last ``)`` of the line, so
  the script name arrives with a literal ``)`` after the tech cause (``SIP 486 Busy Here)``, or just
  ``)`` when empty), as recorded on Asterisk 22.10.1. Fields are split on ``-----``; empty fields
  make runs of dashes (``BUSY---------------SIP 486 Busy Here)`` is BUSY, '', '', tech cause).
  Older VICIdial lines end after ``${ANSWEREDTIME}`` with no tech cause and no stray ``)``.

* The argument form ``AGI(agi://host/call_log,${DIALSTATUS},${HANGUPCAUSE},${DIALEDTIME},
  ${ANSWEREDTIME},${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)})``: positional ``agi_arg_N``; any
  trailing ones may be left out.

Also here: VICIdial's caller code (the lead id inside CALLERID(name)) and the SIP status inside a
technology cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .constants import HVCAUSES_MARKER, HVCAUSES_SEPARATOR


@dataclass(frozen=True, slots=True)
class HangupFields:
    """End-of-call values handed over by the dialplan; ``''`` means "not given"."""

    dial_status: str = ""
    hangup_cause: str = ""
    dialed_time: str = ""
    answered_time: str = ""
    tech_cause: str = ""

    @property
    def given(self) -> bool:
        """True when the dialplan passed anything at all (this is then an end stage)."""
        return any((self.dial_status, self.hangup_cause, self.dialed_time, self.answered_time, self.tech_cause))


_FIELD_STRIP = "- \t"


def is_hvcauses(script: str) -> bool:
    """True for VICIdial's hangup script name (``...--HVcauses--...``, any letter case)."""
    return HVCAUSES_MARKER.lower() in script.lower()


def strip_dangling_paren(text: str) -> str:
    """Remove one trailing ``)`` that has no ``(`` to match (VICIdial's doubled ``))``).

    ``SIP 486 Busy Here)`` -> ``SIP 486 Busy Here``; ``)`` -> ``''``; a balanced
    ``... (overload)`` is left alone, and so is text that does not end in ``)``.
    """
    if text.endswith(")") and text.count(")") > text.count("("):
        return text[:-1]
    return text


def parse_hvcauses(script: str) -> HangupFields:
    """The values inside VICIdial's ``--HVcauses--`` script name (all ``''`` when not that form).

    Fields are taken by position after the marker: PRI, DEBUG, HANGUPCAUSE, DIALSTATUS,
    DIALEDTIME, ANSWEREDTIME, tech cause. Missing trailing fields read ``''``; fields beyond the
    seventh are ignored. Each field loses leading/trailing dashes and blanks, so a run of dashes
    that is not a multiple of five still splits sensibly (no value VICIdial sends starts or ends
    with a dash).
    """
    at = script.lower().find(HVCAUSES_MARKER.lower())
    if at < 0:
        return HangupFields()
    body = script[at + len(HVCAUSES_MARKER):]
    body = strip_dangling_paren(body.rstrip())
    fields = [f.strip(_FIELD_STRIP) for f in body.split(HVCAUSES_SEPARATOR)]
    fields += [""] * (7 - len(fields))
    _pri, _debug, cause, status, dialed, answered, tech = fields[:7]
    return HangupFields(
        dial_status=status,
        hangup_cause=cause,
        dialed_time=dialed,
        answered_time=answered,
        tech_cause=strip_dangling_paren(tech),
    )


def parse_arguments(args: list[str]) -> HangupFields:
    """The values of the argument form: DIALSTATUS, HANGUPCAUSE, DIALEDTIME, ANSWEREDTIME, tech cause."""
    fields = [a.strip() for a in args[:5]]
    fields += [""] * (5 - len(fields))
    status, cause, dialed, answered, tech = fields
    return HangupFields(
        dial_status=status,
        hangup_cause=cause,
        dialed_time=dialed,
        answered_time=answered,
        tech_cause=strip_dangling_paren(tech),
    )


def merge_fields(first: HangupFields, second: HangupFields) -> HangupFields:
    """Field by field, the value of ``first`` when non-empty, else that of ``second``."""
    return HangupFields(
        dial_status=first.dial_status or second.dial_status,
        hangup_cause=first.hangup_cause or second.hangup_cause,
        dialed_time=first.dialed_time or second.dialed_time,
        answered_time=first.answered_time or second.answered_time,
        tech_cause=first.tech_cause or second.tech_cause,
    )


def hangup_fields(script: str, args: list[str]) -> HangupFields:
    """What the dialplan handed over, from the HVcauses script name and the arguments together."""
    if not is_hvcauses(script):
        return parse_arguments(args)
    if not args:
        return parse_hvcauses(script)
    return merge_fields(parse_hvcauses(script), parse_arguments(args))


# -- VICIdial caller code -----------------------------------------------------------------------

#: VICIdial's call identifier in CALLERID(name): a type letter (V auto-dial, M manual, Y inbound,
#: ...), the date ``mddhhmmss`` (9 digits) and the lead_id zero-padded to 10 digits: 20 characters
#: (``# VmddhhmmssLLLLLLLLLL`` in AST_VDauto_dial.pl / vdc_db_query.php).
_CALLER_CODE = re.compile(r"[A-Z][0-9]{19}")


def lead_from_caller_code(caller_id_name: str) -> str:
    """The lead_id in a VICIdial caller code, leading zeros removed; ``''`` when not one.

    ``V1121053000000012345`` -> ``12345``. Only the current 10-digit-lead layout is understood:
    VICIdial releases older than 2.4 padded the lead to 9 digits behind a 10-digit date, and for
    those the last 10 digits include the final seconds digit. Configure the lead variable
    (``call_log.variables.lead``) when in doubt; it takes precedence.
    """
    name = caller_id_name.strip()
    if not _CALLER_CODE.fullmatch(name):
        return ""
    return name[-10:].lstrip("0")


# -- technology cause ---------------------------------------------------------------------------

_SIP_CAUSE = re.compile(r"SIP\s+([1-6][0-9]{2})(?:\s+(.*))?", re.IGNORECASE | re.DOTALL)


def sip_cause(tech_cause: str) -> tuple[int | None, str]:
    """(SIP status, reason phrase) from a tech cause such as ``SIP 486 Busy Here``.

    chan_pjsip and chan_sip both render the cause as ``SIP <status> <reason>``. Anything else
    (another technology, an empty cause) gives ``(None, '')``.
    """
    match = _SIP_CAUSE.fullmatch(strip_dangling_paren(tech_cause.strip()))
    if match is None:
        return None, ""
    return int(match.group(1)), (match.group(2) or "").strip()
