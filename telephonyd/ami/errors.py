"""Errors of the AMI client, under the package's exception tree."""

from __future__ import annotations

from ..errors import LimitExceeded, ProtocolError, TelephonydError

__all__ = [
    "AMIActionTimeout",
    "AMIConnectionLost",
    "AMIError",
    "AMILoginFailed",
    "AMINotConnected",
    "LimitExceeded",
    "ProtocolError",
]


class AMIError(TelephonydError):
    """Root of AMI client errors."""


class AMINotConnected(AMIError):
    """No logged-in AMI session (Asterisk down, reconnecting, or the client is stopped)."""

    retryable = True


class AMIConnectionLost(AMINotConnected):
    """The session ended (socket closed, silence past the keepalive deadline, Shutdown)."""


class AMIActionTimeout(AMIError):
    """Asterisk did not answer an action (or finish a list) within its timeout."""

    retryable = True


class AMILoginFailed(AMIError):
    """Asterisk rejected the login (``Authentication failed``): wrong username, secret or ACL."""
