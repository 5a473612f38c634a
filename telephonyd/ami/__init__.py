"""The AMI client: framing (pure), message, dispatch, and the reconnecting `AMIClient`.

Consumers (contacts sync, presence) receive events through `AMIClient.subscribe` and list what
they need again from `AMIClient.on_connect` callbacks; they never read the socket.
"""

from .client import AMIClient
from .errors import (
    AMIActionTimeout,
    AMIConnectionLost,
    AMIError,
    AMILoginFailed,
    AMINotConnected,
)
from .framing import encode_action, parse_messages, split_banner
from .message import AMIMessage

__all__ = [
    "AMIActionTimeout",
    "AMIClient",
    "AMIConnectionLost",
    "AMIError",
    "AMILoginFailed",
    "AMIMessage",
    "AMINotConnected",
    "encode_action",
    "parse_messages",
    "split_banner",
]
