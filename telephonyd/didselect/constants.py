"""Names the ``did_select`` route reads and sets, and the words it answers.

The three ``OPTIMIZER_*`` variables are those the DID Optimizer's own dialplan scripts set and its
dialplan tests (``shared/reference/upstreams.md``): ``OPTIMIZER_DID`` (the DID, leading ``+``
stripped), ``OPTIMIZER_STATUS`` ``SUCCESS|FAILURE``, ``OPTIMIZER_FALLBACK`` ``YES|NO``.
They are set with one ``EXEC MSet`` (``CALLERID(num)`` included: MSet sets each pair as ``Set()``
does, so a name ending in ``)`` is written through the dialplan function; Asterisk 22.10.1 answers
``200 result=0``), or ``SET VARIABLE`` (``200 result=1``).
"""

from __future__ import annotations

from typing import Final

OPTIMIZER_DID: Final = "OPTIMIZER_DID"
OPTIMIZER_STATUS: Final = "OPTIMIZER_STATUS"
OPTIMIZER_FALLBACK: Final = "OPTIMIZER_FALLBACK"
CALLERID_NUM: Final = "CALLERID(num)"

STATUS_SUCCESS: Final = "SUCCESS"
STATUS_FAILURE: Final = "FAILURE"
YES: Final = "YES"
NO: Final = "NO"

# -- agi_* keys (without the prefix) ----------------------------------------------------------
ENV_UNIQUEID: Final = "uniqueid"
ENV_EXTENSION: Final = "extension"
ENV_DNID: Final = "dnid"

# -- result words (the FastAGI server stores them in TELEPHONYD_RESULT; also the store's status) -
#: The API chose the DID (``did.is_fallback`` may still be true: its own fallback).
RESULT_SELECTED: Final = "SELECTED"
#: The API failed; the last good DID of the same campaign and area code was reused (``reuse_ttl_s``).
RESULT_REUSED: Final = "REUSED"
#: The API failed; the configured fallback DID of the campaign was set.
RESULT_FALLBACK: Final = "FALLBACK"
#: The API failed and no fallback applies: the caller id was left alone.
RESULT_FAILED: Final = "FAILED"
#: ``did_select.enabled`` is false: nothing was asked, the caller id was left alone (or fallback).
RESULT_DISABLED: Final = "DISABLED"
#: No ``agi_uniqueid``: nothing can be linked to the call, nothing was asked.
RESULT_ERROR: Final = "ERROR"
RESULTS: Final = (RESULT_SELECTED, RESULT_REUSED, RESULT_FALLBACK, RESULT_FAILED, RESULT_DISABLED, RESULT_ERROR)

# -- failure reasons (metric label, store column) ------------------------------------------------
REASON_TIMEOUT: Final = "timeout"
REASON_TRANSPORT: Final = "transport"
REASON_HTTP_5XX: Final = "http_5xx"
REASON_HTTP_4XX: Final = "http_4xx"
REASON_EMPTY_POOL: Final = "empty_pool"
REASON_MALFORMED: Final = "malformed"
REASON_INVALID_DID: Final = "invalid_did"
REASON_BREAKER_OPEN: Final = "breaker_open"
REASON_DISABLED: Final = "disabled"
REASONS: Final = (
    REASON_TIMEOUT, REASON_TRANSPORT, REASON_HTTP_5XX, REASON_HTTP_4XX, REASON_EMPTY_POOL,
    REASON_MALFORMED, REASON_INVALID_DID, REASON_BREAKER_OPEN, REASON_DISABLED,
)  # fmt: skip

#: The fallback DID key that applies to every campaign without its own.
ANY_CAMPAIGN: Final = "*"
