"""Wiring of the AMI side: AMI client, ps_contacts sync, presence, WebSocket stream, MQTT.

Kept out of `telephonyd.app` so the backbone reads top to bottom; like app.py it is allowed to import
every edge. Called by `App` only when ``ami.enabled``.
"""

from __future__ import annotations

from typing import Any

from .ami import AMIClient
from .contacts import ContactsSync
from .presence import AgentStream, PresenceService
from .presence.feed import mount_dashboard
from .presence.routes import routes as presence_routes
from .store import Store


async def build_ami_side(app: Any) -> None:
    """Construct the AMI-side components on ``app`` (an `App`) and mount their routes.

    ``ps_contacts.url`` names another database for the table (the one Asterisk's realtime reads):
    a second `Store` is started for it with only the contacts schema.
    """
    config = app.config
    client = AMIClient(config.ami)
    contacts_store = app.store
    if config.ps_contacts.url is not None:
        from .contacts.schema import metadata as contacts_metadata

        contacts_store = Store(
            config.ps_contacts.url.get_secret_value(),
            schemas=[contacts_metadata],
            pool_size=config.store.pool_size,
            connect_timeout_s=config.store.connect_timeout_s,
        )
        if not await app._start_store(contacts_store):  # noqa: SLF001 - same retry policy as the main store
            return
        app.stores.append(contacts_store)
    contacts = ContactsSync(contacts_store, client, config.ps_contacts, node_id=config.node_id)
    presence = PresenceService(config.presence, ami=client, contacts=contacts, node_id=config.node_id)
    stream = AgentStream.for_config(config.presence, presence.agents)
    presence.add_listener(stream.publish_event)
    feed = mount_dashboard(config.presence, presence, contacts, app.http)  # the dashboard contract
    app.http.add_routes(presence_routes(presence, stream, feed.stream), auth="admin")
    app.http.on_shutdown(stream.close)
    app.ami_client, app.contacts_sync, app.presence_service = client, contacts, presence
    # Consumers first, so their subscriptions exist before the client's first login.
    app.components["contacts"] = contacts
    app.components["presence"] = presence
    if config.mqtt.enabled:
        from .mqtt import MQTTPublisher

        publisher = MQTTPublisher(config.mqtt, node_id=config.node_id, presence=presence)
        presence.add_listener(publisher.publish_event)
        app.components["mqtt"] = publisher
    app.components["ami"] = client
