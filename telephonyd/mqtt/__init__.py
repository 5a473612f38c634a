"""MQTT edge: publishes agent presence (retained per-agent state, deltas, availability with a will)."""

from .publisher import MQTTPublisher
from .topics import Topics

__all__ = ["MQTTPublisher", "Topics"]
