"""Names the ``call_log`` handler reads from Asterisk, and the result words it answers.

Every channel variable, dialplan function and ``agi_*`` key the handler uses is named here once;
the rest of the package refers to these constants, never to string literals.

Facts from Asterisk 22.10.1 (recordings in ``tests/fixtures/asterisk-22.10.1/vicidial/``) and the
Asterisk source (``app_dial.c``, ``func_hangupcause.c``, ``func_channel.c``, ``res_agi.c``).
"""

from __future__ import annotations

from typing import Final

# -- channel variables set by Dial() (app_dial.c) -------------------------------------------------
#: ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL, DONTCALL, TORTURE, INVALIDARGS.
#: Unset until Dial() ran (``200 result=0``).
DIALSTATUS: Final = "DIALSTATUS"
#: Seconds from the start of Dial() to its end; set (non-empty) only when the call was bridged.
DIALEDTIME: Final = "DIALEDTIME"
#: Seconds the bridged call lasted; set (non-empty) only when the call was bridged.
ANSWEREDTIME: Final = "ANSWEREDTIME"
#: The Q.850 cause of the channel's hangup (``0`` while the channel is up).
HANGUPCAUSE: Final = "HANGUPCAUSE"

# -- AMD() (app_amd.c) ------------------------------------------------------------------------------
AMDSTATUS: Final = "AMDSTATUS"
AMDCAUSE: Final = "AMDCAUSE"

# -- dialplan functions -----------------------------------------------------------------------------
CALLERID_NUM: Final = "CALLERID(num)"
CALLERID_NAME: Final = "CALLERID(name)"
CHANNEL_LINKEDID: Final = "CHANNEL(linkedid)"
#: Who hung up first: a channel name, or empty when Asterisk itself ended the call (11+).
CHANNEL_HANGUPSOURCE: Final = "CHANNEL(hangupsource)"
#: Channel names of the dialed legs whose hangup cause Asterisk kept (11+), comma-separated.
HANGUPCAUSE_KEYS: Final = "HANGUPCAUSE_KEYS()"
#: The technology cause of the dialed leg, e.g. ``SIP 486 Busy Here`` (11+). This is the
#: expression VICIdial's ``h`` line expands; with several dialed legs it yields nothing.
TECH_CAUSE_EXPR: Final = "HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)"


def tech_cause_of(channel: str) -> str:
    """The ``GET VARIABLE`` name that reads one dialed leg's technology cause."""
    return f"HANGUPCAUSE({channel},tech)"


# -- agi_* environment keys (without the ``agi_`` prefix) ----------------------------------------
ENV_UNIQUEID: Final = "uniqueid"
#: Longest uniqueid recorded: the outbox key column (an indexed utf8mb4 VARCHAR(191) on MariaDB).
#: Asterisk's own uniqueids are far shorter (AST_MAX_UNIQUEID is 150 in Asterisk 22, and the
#: recorded ones are ``<epoch>.<n>``); a longer one is refused with ``ERROR``.
MAX_UNIQUEID_CHARS: Final = 191
ENV_EXTENSION: Final = "extension"
ENV_DNID: Final = "dnid"
ENV_CALLERIDNAME: Final = "calleridname"
ENV_CHANNEL: Final = "channel"
#: What Asterisk sends for an unset caller id or dnid.
ENV_UNKNOWN: Final = "unknown"
#: The dialplan extension that runs after hangup.
HANGUP_EXTENSION: Final = "h"

# -- VICIdial's hangup line ---------------------------------------------------------------------
#: Marker in the script name of VICIdial's ``h`` line (matched case-insensitively, as VICIdial does).
HVCAUSES_MARKER: Final = "--HVcauses--"
#: Separator of the fields in that script name.
HVCAUSES_SEPARATOR: Final = "-----"

# -- result words (the FastAGI server stores them in TELEPHONYD_RESULT) ------------------------
RESULT_STARTED: Final = "STARTED"
RESULT_SKIPPED: Final = "SKIPPED"
RESULT_QUEUED: Final = "QUEUED"
RESULT_DUPLICATE: Final = "DUPLICATE"
RESULT_ERROR: Final = "ERROR"
RESULTS: Final = (RESULT_STARTED, RESULT_SKIPPED, RESULT_QUEUED, RESULT_DUPLICATE, RESULT_ERROR)

#: The outbox target the DID Optimizer sender is registered under.
DEFAULT_TARGET: Final = "did_optimizer"
#: ``agentId`` when no agent is known (what the DID Optimizer's own reporter sends).
UNKNOWN_AGENT: Final = "0"
