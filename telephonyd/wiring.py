"""Wiring of the AMI side: AMI client, ps_contacts sync, presence, WebSocket stream, MQTT.

Kept out of `telephonyd.app` so the backbone reads top to bottom; like app.py it is allowed to import
every edge. Called by `App` only when ``ami.enabled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .ami import AMIClient
from .contacts import ContactsSync
from .presence import AgentStream, PresenceService
from .presence.feed import mount_dashboard
from .presence.routes import routes as presence_routes
from .store import Store


@dataclass(frozen=True, slots=True)
class AMISide:
    """The AMI-side parts the app's metrics read (the components themselves are in ``components``)."""

    client: AMIClient
    contacts: ContactsSync
    presence: PresenceService


async def build_ami_side(app: Any) -> AMISide | None:
    """Construct the AMI-side components for ``app`` (an `App`): adds them to its ``components``
    and ``reloaders``, mounts their routes; None when the separate contacts store never started.

    ``ps_contacts.url`` names another database for the table (the one Asterisk's realtime reads):
    a second `Store` is started for it with only the contacts schema.
    """
    config = app.config
    client = AMIClient(config.ami)
    contacts_store = app.store
    if config.ps_contacts.url is not None:
        from .contacts.schema import metadata_for

        contacts_store = Store(
            config.ps_contacts.url.get_secret_value(),
            schemas=[metadata_for(config.ps_contacts.mode)],
            pool_size=config.store.pool_size,
            connect_timeout_s=config.store.connect_timeout_s,
        )
        if not await app.start_store(contacts_store):  # the main store's retry policy
            return None
        app.stores.append(contacts_store)
    contacts = ContactsSync(contacts_store, client, config.ps_contacts, node_id=config.node_id)
    presence = PresenceService(config.presence, ami=client, contacts=contacts, node_id=config.node_id)
    stream = AgentStream.for_config(config.presence, presence.agents)
    presence.add_listener(stream.publish_event)
    feed = mount_dashboard(config.presence, presence, contacts, app.http)  # the dashboard contract
    app.http.add_routes(presence_routes(presence, stream, feed.stream), auth="admin")
    app.http.on_shutdown(stream.close)
    # Consumers first, so their subscriptions exist before the client's first login.
    app.components["contacts"] = contacts
    app.components["presence"] = presence
    app.reloaders.append(presence.reconfigure)
    calls = build_calls(app, client) if config.calls.enabled else None
    if config.mqtt.enabled:
        from .mqtt import MQTTPublisher

        live_calls = (lambda: list(calls.tracker.calls)) if calls is not None and config.calls.mqtt else None
        publisher = MQTTPublisher(config.mqtt, node_id=config.node_id, presence=presence, live_calls=live_calls)
        presence.add_listener(publisher.publish_event)
        if live_calls is not None:
            assert calls is not None
            calls.add_listener(mqtt_call_listener(publisher, config.node_id))
        app.components["mqtt"] = publisher
    app.components["ami"] = client
    return AMISide(client, contacts, presence)


def build_calls(app: Any, client: AMIClient) -> Any:
    """The call tracker (``calls``), its WebSocket stream, routes, call records and webhooks."""
    from .calls.routes import CallStream
    from .calls.routes import routes as call_routes
    from .calls.service import CallService
    from .calls.sink import CallSink
    from .calls.webhooks import WebhookSender
    from .upstream.did_optimizer import DID_OPTIMIZER_TARGET

    config = app.config
    service = CallService(config.calls, ami=client)
    stream = CallStream(service.live_calls, node_id=config.node_id, queue_size=config.calls.ws_queue_size,
                        heartbeat_s=config.presence.ws_heartbeat_s, send_timeout_s=config.presence.ws_send_timeout_s)
    service.add_listener(stream.publish_event)
    sink = CallSink(config.calls, store=app.store, outbox=app.outbox, node_id=config.node_id,
                    outcome_target=DID_OPTIMIZER_TARGET, outcome_source=config.call_log.source)

    def to_sink(event: Any) -> None:
        if sink.wanted(event):
            sink.push(event)

    service.add_listener(to_sink)
    for webhook in config.calls.webhooks:
        app.register_sender(webhook.target, WebhookSender(webhook, app.session, app.store), enabled=webhook.enabled)
    app.http.add_routes(call_routes(app.store, stream, service.live_calls, call_log_target=DID_OPTIMIZER_TARGET),
                        auth="admin")
    app.http.on_shutdown(stream.close)
    app.components["calls"] = service
    app.components["calls_sink"] = sink
    return service


def mqtt_call_listener(publisher: Any, node_id: str) -> Any:
    """A call-event listener publishing each event's document through ``publisher.publish_call``."""
    from .calls.documents import document
    from .calls.model import ENDED
    from .calls.webhooks import body_of

    def publish(event: Any) -> None:
        publisher.publish_call(event.linkedid, body_of(document(event, node_id)), ended=event.kind == ENDED)

    return publish
