"""Agent presence: a pure state machine (`state`), its feed from AMI and contacts (`service`), the
``/ws/agents`` WebSocket (`stream`), the ``/api/ami/*`` routes (`routes`) and CLI commands."""

from .routes import routes
from .service import PresenceService, PresenceUnavailable
from .state import AgentRetired, AgentsResynced, AgentStatus, PresenceMachine
from .stream import AgentStream

__all__ = [
    "AgentRetired",
    "AgentStatus",
    "AgentStream",
    "AgentsResynced",
    "PresenceMachine",
    "PresenceService",
    "PresenceUnavailable",
    "routes",
]
