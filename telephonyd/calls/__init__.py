"""Calls as events: a tracker fed by AMI, call events out (MQTT, WebSocket, webhooks), call records."""

from .describe import CallRules, describe
from .model import EVENT_KINDS, SCHEMA, SCHEMA_VERSION, Call, CallEvent, Leg
from .tracker import CallTracker

__all__ = ["EVENT_KINDS", "SCHEMA", "SCHEMA_VERSION", "Call", "CallEvent", "CallRules", "CallTracker", "Leg",
           "describe"]
