"""Wiring of the dashboard contract: native presence events and contact changes, translated once
(`dashboard.DashboardTranslator`), fanned out to the plain WebSocket in the dashboard shape and to
the Socket.IO hub. `mount_dashboard` builds it for one HTTP server; it never touches the native
stream, MQTT or the API's native payloads."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..config import PresenceConfig
from ..contacts.model import ContactChange
from . import dashboard
from .stream import AgentStream

log = logging.getLogger(__name__)


@dataclass
class DashboardFeed:
    """A presence listener (`publish_event`) and contacts batch subscriber (`publish_contacts`)."""

    translator: dashboard.DashboardTranslator
    stream: AgentStream
    hub: Any = None  # SocketIOHub, when mounted

    def publish_event(self, event: Any) -> None:
        for name, data in self.translator.presence(event):
            self._send(name, data)

    def publish_contacts(self, changes: list[ContactChange]) -> None:
        if not self.stream.clients and not (self.hub is not None and self.hub.clients):
            return  # nobody listens: a 50,000-contact resync costs nothing here
        for name, data in self.translator.contacts(changes):
            self._send(name, data)

    def _send(self, name: str, data: dict[str, Any]) -> None:
        self.stream.publish_message({"type": name, **data})
        if self.hub is not None:
            self.hub.publish(name, data)


def mount_dashboard(config: PresenceConfig, presence: Any, contacts: Any, http: Any) -> DashboardFeed:
    """Build the feed, subscribe it, mount ``/socket.io/`` (when ``presence.socketio`` and
    python-socketio is installed) and register the shutdown of both. Returns the feed; pass
    ``feed.stream`` to `presence.routes` as the dashboard-shaped ``/ws/agents``."""
    translator = dashboard.DashboardTranslator()

    def snapshot() -> dict[str, Any]:
        return dashboard.snapshot(presence.agents(), translator.now())

    stream = AgentStream.for_config(config, presence.agents, snapshot=lambda: {"type": "agents:snapshot", **snapshot()})
    hub = None
    if config.socketio:
        try:
            from .socketio_hub import SocketIOHub

            hub = SocketIOHub(snapshot, http.authorized, cors_origins=config.socketio_cors_origins)
        except ImportError:
            log.warning("presence.socketio is on but python-socketio is not installed; /socket.io/ not served")
    feed = DashboardFeed(translator, stream, hub)
    presence.add_listener(feed.publish_event)
    contacts.subscribe_batch(feed.publish_contacts)
    http.on_shutdown(stream.close)
    if hub is not None:
        http.add_routes(hub.routes(), auth="none")  # the admin token is checked on the Socket.IO connect
        http.on_shutdown(hub.close)
    return feed
