"""FastAGI: the protocol (pure), the session handed to route handlers, and the listener.

Route handlers are ``async def handler(session: AGISession) -> str``; the returned word lands in the
channel variable ``TELEPHONYD_RESULT``. See `server` for the per-connection lifecycle.
"""

from .metrics import FastAGICounters
from .protocol import (
    AGICommandTimeout,
    AGIConnectionClosed,
    AGIReply,
    AGIReplyError,
    AGIRoute,
    parse_script,
)
from .server import RESULT_VARIABLE, FastAGIServer, Handler
from .session import AGISession

__all__ = [
    "AGICommandTimeout",
    "AGIConnectionClosed",
    "AGIReply",
    "AGIReplyError",
    "AGIRoute",
    "AGISession",
    "FastAGICounters",
    "FastAGIServer",
    "Handler",
    "RESULT_VARIABLE",
    "parse_script",
]
