"""The builders of every edge: functions of typed dependencies returning a `Feature`.

With `telephonyd.app` the only module allowed to import every edge. Each builder constructs the
parts of one edge from the `Config` and the shared parts `App` owns (the store, the outbox and its
`Senders`, the HTTP client session, the HTTP listener when a part needs it to mount itself) and
declares what they bring: components, routes, reloaders, shutdown hooks and metrics (see
`telephonyd.feature`). A builder never touches the app; `App` mounts what the features declare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .config import Config
from .feature import Feature, Hook
from .metrics import EventCounter, UpstreamSection, UpstreamStats
from .outbox import Outbox
from .store import Store
from .upstream.did_optimizer import DID_OPTIMIZER_TARGET
from .web import HTTPServer

#: ``start_store(store) -> started``: start a store with the main store's retry policy (False when
#: the daemon was asked to stop while waiting).
StartStore = Callable[[Store], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Senders:
    """Registers outbox senders, each measured for ``telephonyd_upstream_*`` (`UpstreamStats`)."""

    outbox: Outbox
    stats: UpstreamStats = field(default_factory=UpstreamStats)

    def register(self, target: str, sender: Any, *, enabled: bool) -> None:
        """Register ``sender`` for ``target`` (again on reload, to enable or disable it)."""
        self.outbox.register_sender(target, self.stats.wrap(target, sender), enabled=enabled)


def outbox_feature(config: Config, senders: Senders, session: aiohttp.ClientSession) -> Feature:
    """The outbox, the DID Optimizer sender (``did_optimizer.enabled`` applied live) and the
    ``telephonyd_outbox_*`` / ``telephonyd_upstream_*`` metrics."""
    from .upstream.did_optimizer import DIDOptimizerSender

    did_sender = DIDOptimizerSender(config.did_optimizer, session)
    senders.register(DID_OPTIMIZER_TARGET, did_sender, enabled=config.did_optimizer.enabled)
    sending = [config.did_optimizer.enabled]

    def did_optimizer_enabled(new: Config) -> None:  # ``did_optimizer.enabled`` is live
        if new.did_optimizer.enabled != sending[0]:
            sending[0] = new.did_optimizer.enabled
            senders.register(DID_OPTIMIZER_TARGET, did_sender, enabled=sending[0])

    return Feature("outbox", components={"outbox": senders.outbox},
                   reloaders=(did_sender.reconfigure, did_optimizer_enabled),
                   metrics=(*senders.outbox.collectors(), UpstreamSection(senders.stats)))


def http_feature(http: HTTPServer) -> Feature:
    """The HTTP listener itself: a listener component and its request/connection metrics."""
    return Feature("http", components={"http": http}, listeners=(http,), metrics=tuple(http.collectors()))


def fastagi_feature(config: Config, store: Store, outbox: Outbox, *, max_sessions: int | None) -> Feature:
    """The FastAGI listener with its routes ``call_log`` (`CallLogHandler`) and ``did_select``."""
    from .calllog import CallLogHandler
    from .didselect import DIDSelectService
    from .fastagi import FastAGIServer

    did_select = DIDSelectService(config.did_select, config.did_optimizer, store, node_id=config.node_id)
    handler = CallLogHandler(config.call_log, outbox.enqueue, target=DID_OPTIMIZER_TARGET,
                             selections=did_select.selection_for)
    fastagi = FastAGIServer(config.fastagi, {"call_log": handler, "did_select": did_select.handler},
                            max_sessions=max_sessions)
    return Feature("fastagi", components={"fastagi": fastagi, "did_select": did_select}, listeners=(fastagi,),
                   reloaders=(did_select.reconfigure, handler.reconfigure),
                   metrics=(*fastagi.collectors(), did_select.metrics))


def ameyo_feature(config: Config, store: Store, senders: Senders, session: aiohttp.ClientSession) -> Feature:
    """The Ameyo callbacks (public routes: their access control is their own), their admin
    routes, and the TopS.II sender."""
    from .ameyo import AmeyoService
    from .ameyo.routes import admin_routes, callback_routes
    from .upstream.tops import TopsSender

    service = AmeyoService(config.ameyo, config.tops, store, senders.outbox, node_id=config.node_id)
    tops = TopsSender(config.tops, session, on_result=service.record_upstream)
    senders.register("tops", tops, enabled=True)
    return Feature("ameyo", components={"ameyo": service}, public_routes=tuple(callback_routes(service)),
                   admin_routes=tuple(admin_routes(service)), reloaders=(tops.reconfigure, service.reconfigure),
                   metrics=tuple(service.collectors()))


def vicidial_feature(config: Config, store: Store, outbox: Outbox) -> Feature:
    """Dispositions read from VICIdial's tables, reported to the DID Optimizer."""
    from .vicidial import VICIdialSource

    source = VICIdialSource(config.vicidial, store, outbox, target=DID_OPTIMIZER_TARGET, node_id=config.node_id)
    return Feature("vicidial", components={"vicidial": source}, metrics=tuple(source.instruments()))


async def ami_features(config: Config, store: Store, senders: Senders, session: aiohttp.ClientSession,
                       authorized: Callable[[web.Request], bool], start_store: StartStore) -> list[Feature]:
    """The AMI side: presence (ps_contacts sync, presence, WebSocket stream, dashboard), calls
    (when ``calls.enabled``), MQTT (when ``mqtt.enabled``) and the AMI client, in that start order
    (consumers first, so their subscriptions exist before the client's first login). Empty when
    the separate contacts store never started (stop requested meanwhile).

    ``ps_contacts.url`` names another database for the table (the one Asterisk's realtime reads):
    a second `Store` is started for it with only the contacts schema (closed at shutdown).
    ``authorized`` (`HTTPServer.authorized`) checks the admin token on a Socket.IO connect
    (`presence.feed.dashboard_feed`, the dashboard contract).
    """
    from .ami import AMIClient
    from .contacts import ContactsSync
    from .presence import AgentStream, PresenceService
    from .presence.feed import dashboard_feed
    from .presence.routes import routes as presence_routes

    client = AMIClient(config.ami)
    contacts_store = store
    hooks: tuple[Hook, ...] = ()
    if config.ps_contacts.url is not None:
        from .contacts.schema import metadata_for

        contacts_store = Store(
            config.ps_contacts.url.get_secret_value(),
            schemas=[metadata_for(config.ps_contacts.mode)],
            pool_size=config.store.pool_size,
            connect_timeout_s=config.store.connect_timeout_s,
        )
        if not await start_store(contacts_store):
            return []
        hooks = (contacts_store.close,)
    contacts = ContactsSync(contacts_store, client, config.ps_contacts, node_id=config.node_id)
    presence = PresenceService(config.presence, ami=client, contacts=contacts, node_id=config.node_id)
    stream = AgentStream.for_config(config.presence, presence.agents)
    presence.add_listener(stream.publish_event)
    feed = dashboard_feed(config.presence, presence, contacts, authorized)  # the dashboard contract
    features = [Feature("presence", components={"contacts": contacts, "presence": presence},
                        public_routes=tuple(feed.routes()),
                        admin_routes=tuple(presence_routes(presence, stream, feed.stream)),
                        reloaders=(presence.reconfigure,), http_shutdown=(*feed.closers(), stream.close),
                        shutdown_hooks=hooks,
                        metrics=(*contacts.collectors(), *presence.collectors()))]
    calls = None
    if config.calls.enabled:
        calls, feature = calls_feature(config, store, senders, session, client)
        features.append(feature)
    if config.mqtt.enabled:
        from .mqtt import MQTTPublisher

        live_calls = (lambda: list(calls.tracker.calls)) if calls is not None and config.calls.mqtt else None
        publisher = MQTTPublisher(config.mqtt, node_id=config.node_id, presence=presence, live_calls=live_calls)
        presence.add_listener(publisher.publish_event)
        if live_calls is not None and calls is not None:
            calls.add_listener(mqtt_call_listener(publisher, config.node_id))
        features.append(Feature("mqtt", components={"mqtt": publisher}, metrics=tuple(publisher.collectors())))
    events = EventCounter()  # every AMI event by name, for telephonyd_ami_events_total
    client.subscribe("*", events.observe)
    features.append(Feature("ami", components={"ami": client}, metrics=tuple(client.collectors(events))))
    return features


def calls_feature(config: Config, store: Store, senders: Senders, session: aiohttp.ClientSession,
                  client: Any) -> tuple[Any, Feature]:
    """The call tracker (``calls``), its WebSocket stream, routes, call records and webhooks;
    returns the `CallService` (MQTT listens to it) with its feature."""
    from .calls.routes import CallStream
    from .calls.routes import routes as call_routes
    from .calls.service import CallService
    from .calls.sink import CallSink
    from .calls.webhooks import WebhookSender

    service = CallService(config.calls, ami=client)
    stream = CallStream(service.live_calls, node_id=config.node_id, queue_size=config.calls.ws_queue_size,
                        heartbeat_s=config.presence.ws_heartbeat_s, send_timeout_s=config.presence.ws_send_timeout_s)
    service.add_listener(stream.publish_event)
    sink = CallSink(config.calls, store=store, outbox=senders.outbox, node_id=config.node_id,
                    outcome_target=DID_OPTIMIZER_TARGET, outcome_source=config.call_log.source)

    def to_sink(event: Any) -> None:
        if sink.wanted(event):
            sink.push(event)

    service.add_listener(to_sink)
    for webhook in config.calls.webhooks:
        senders.register(webhook.target, WebhookSender(webhook, session, store), enabled=webhook.enabled)
    routes = call_routes(store, stream, service.live_calls, call_log_target=DID_OPTIMIZER_TARGET)
    return service, Feature("calls", components={"calls": service, "calls_sink": sink}, admin_routes=tuple(routes),
                            http_shutdown=(stream.close,))


def console_feature(config: Config, http: HTTPServer, status: Callable[[], Awaitable[dict[str, Any]]],
                    outbox: Outbox, store: Store, *, agents: bool, calls: bool) -> Feature:
    """The operator's web console at ``GET /`` (`telephonyd.console`); its sessions become a second
    way into the admin routes (``/ws/agents``, ``/ws/calls`` included). ``agents`` / ``calls``:
    whether those features run (the console shows their panes)."""
    from .console.routes import admin_routes, public_routes
    from .console.sessions import ConsoleSessions

    sessions = ConsoleSessions(lambda: http.admin_token, config.http.console_session_ttl_s, tokenless=http.authorized)
    http.session_auth = sessions.accepts
    shown = {"agents": agents, "calls": calls}
    return Feature("console",
                   public_routes=tuple(public_routes(sessions, lambda r: http.limits.note_auth_refused(
                       "console", r.path, r.remote))),
                   admin_routes=tuple(admin_routes(status, outbox, store, lambda: dict(shown))))


def mqtt_call_listener(publisher: Any, node_id: str) -> Callable[[Any], None]:
    """A call-event listener publishing each event's document through ``publisher.publish_call``."""
    from .calls.documents import document
    from .calls.model import ENDED
    from .calls.webhooks import body_of

    def publish(event: Any) -> None:
        publisher.publish_call(event.linkedid, body_of(document(event, node_id)), ended=event.kind == ENDED)

    return publish
