"""The ``call_log`` FastAGI handler and the DID Optimizer call-result payload.

`CallLogHandler` is the handler (I/O against an AGI session and an outbox ``enqueue``);
`hangup_line`, `outcome` and `payload` are pure; `constants` names every channel variable used.
"""

from .handler import CallLogHandler, is_end_stage
from .hangup_line import HangupFields, lead_from_caller_code, parse_arguments, parse_hvcauses, sip_cause
from .outcome import CallOutcome, StartRecord, resolve_outcome
from .payload import PAYLOAD_FIELDS, build_payload

__all__ = [
    "PAYLOAD_FIELDS",
    "CallLogHandler",
    "CallOutcome",
    "HangupFields",
    "StartRecord",
    "build_payload",
    "is_end_stage",
    "lead_from_caller_code",
    "parse_arguments",
    "parse_hvcauses",
    "resolve_outcome",
    "sip_cause",
]
