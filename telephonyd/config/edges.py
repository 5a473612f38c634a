"""Sections of the AMI side (AMI, ``ps_contacts``, presence, MQTT) and the dialer side (Ameyo, TopS.II, VICIdial)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from ..reloadmarks import Reload, marks
from .values import Networks, Section

# ---------------------------------------------------------------------------------------------
# Sections (AMI, presence, MQTT)


class AMITLSConfig(Section):
    """AMI over TLS (Asterisk ``manager.conf`` ``tlsenable=yes``, port 5039 by default).

    ``ca_file``: PEM CAs to verify Asterisk's certificate against (default: the system store);
    ``verify: false`` accepts any certificate (a lab's self-signed one; not for production);
    ``server_hostname``: the name (or IP) checked against the certificate and sent as SNI (default:
    ``ami.host``); ``check_hostname: false`` verifies the chain only. ``cert_file``/``key_file``: a
    client certificate, when Asterisk's side asks for one.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="enabled ca_file verify check_hostname server_hostname cert_file key_file",
    )
    enabled: bool = False
    ca_file: Path | None = None
    verify: bool = True
    check_hostname: bool = True
    server_hostname: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class AMIConfig(Section):
    """The AMI client (Asterisk manager, port 5038; 5039 with ``tls``).

    ``auth``: ``plain`` (Secret in the Login) or ``md5`` (Challenge, then the md5 of challenge +
    secret). ``action_timeout_s`` bounds a reply (and each gap in a list); a ``Ping`` every
    ``ping_interval_s`` must be answered within ``ping_timeout_s``; reconnects wait
    ``backoff_base_s`` doubling up to ``backoff_max_s`` (with jitter), except while the connect itself
    is refused: then every 0.5 s (`AMIClient.refused_probe_s`). A line or message over
    ``max_line_bytes``/``max_message_bytes`` ends the session.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="enabled host port username secret auth connect_timeout_s action_timeout_s ping_interval_s "
        "ping_timeout_s backoff_base_s backoff_max_s max_line_bytes max_message_bytes events "
        "action_id_prefix",
    )
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "telephonyd"
    secret: SecretStr | None = None
    auth: Literal["plain", "md5"] = "plain"
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(10.0, gt=0)
    ping_interval_s: float = Field(20.0, gt=0)
    ping_timeout_s: float = Field(5.0, gt=0)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    max_line_bytes: int = Field(16 * 1024, ge=256)
    max_message_bytes: int = Field(256 * 1024, ge=1024)
    #: The login's ``Events`` header: ``on``, ``off`` or event classes. ``system`` carries
    #: ContactStatus/PeerStatus/FullyBooted/Shutdown/Reload, ``call`` DeviceStateChange/Newchannel/
    #: Hangup/Dial*, ``agent`` queue member events, ``security`` SuccessfulAuth (the only trace of a
    #: registration refresh). Asterisk also filters by the user's ``read=``.
    events: str = Field("system,call,agent,security", pattern=r"^(on|off|[a-z]+(,[a-z]+)*)$")
    #: ActionIDs are ``<prefix>-<counter>`` (deterministic, so recorded traffic can be replayed).
    action_id_prefix: str = Field("telephonyd", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    tls: AMITLSConfig = AMITLSConfig()


class PSContactsConfig(Section):
    """The realtime ``ps_contacts`` table kept in step with Asterisk's contacts.

    ``mode``: ``owned`` (Asterisk keeps contacts in AstDB; telephonyd inserts, updates and deletes
    the rows) or ``asterisk`` (``contact=realtime,ps_contacts`` in sorcery.conf: Asterisk writes the
    rows, telephonyd only fills its status columns). ``url``: another database for the table (default:
    the store's). ``reg_server``: the value this instance's rows carry and the only rows a resync
    touches (default ``node_id``), so several Asterisk servers can share one table.
    ``coalesce_s``: events for one contact within this window become one write.
    ``expiry_check_s``: how often contacts past their expiration are checked (owned) or status
    columns are compared with Asterisk's view (asterisk).
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="mode url reg_server coalesce_s expiry_check_s verify_max_endpoints store_timeout_s "
        "max_queue",
    )
    mode: Literal["owned", "asterisk"] = "owned"
    url: SecretStr | None = None
    reg_server: str | None = None
    coalesce_s: float = Field(0.05, ge=0)
    expiry_check_s: float = Field(30.0, gt=0)
    #: New or expired-looking contacts are checked with one PJSIPShowEndpoint per endpoint; more
    #: endpoints than this at once (a registration storm) make one full resync instead.
    verify_max_endpoints: int = Field(50, ge=0)
    #: Bound on one database batch (a resync included); a failed batch is retried with backoff.
    store_timeout_s: float = Field(30.0, gt=0)
    #: Events waiting for the writer beyond this are dropped and a full resync is run instead.
    max_queue: int = Field(200_000, ge=1000)


class PresenceConfig(Section):
    """Agent presence from AMI device states, contacts and channels; the ``/ws/agents`` stream.

    ``technologies`` are the channel technologies whose devices are agents' phones;
    ``endpoint_pattern`` (a regular expression matched against the whole endpoint name) narrows them,
    e.g. ``"[0-9]{3,6}"`` to leave trunks out. ``wrap_up_s`` > 0 shows ``wrap_up`` for that long after
    a call. ``ws_queue_size`` messages may wait for one WebSocket client before it is dropped.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        live="wrap_up_s seed_timeout_s",
        restart="technologies endpoint_pattern ws_queue_size ws_heartbeat_s ws_send_timeout_s "
        "custom_device_states availability_listings api_shape socketio socketio_cors_origins",
    )
    wrap_up_s: float = Field(0.0, ge=0)
    technologies: list[str] = Field(["PJSIP", "SIP", "IAX2"], min_length=1)
    endpoint_pattern: str | None = None
    seed_timeout_s: float = Field(30.0, gt=0)
    ws_queue_size: int = Field(256, ge=2)
    ws_heartbeat_s: float = Field(30.0, gt=0)
    ws_send_timeout_s: float = Field(10.0, gt=0)
    #: ``Custom:`` device name prefix -> availability state it sets for the extension after the prefix
    #: while the device is in use (``Custom:DND1010`` BUSY -> dnd for 1010).
    custom_device_states: dict[str, Literal["dnd", "paused", "away"]] = Field(default_factory=lambda: {"DND": "dnd"})
    #: The seed also asks QueueStatus and PresenceStateList (queue pause, presence dnd/away); live
    #: QueueMember*/PresenceStateChange events are followed either way.
    availability_listings: bool = True
    #: What ``GET /api/ami/extensions``, ``/api/ami/status`` and ``/ws/agents`` answer without a
    #: ``?shape=`` query: ``native`` (the richer payloads) or ``dashboard`` (the Mayday CRM contract).
    api_shape: Literal["native", "dashboard"] = "native"
    #: Serve the dashboard's events on Socket.IO at ``/socket.io/`` (python-socketio; admin token).
    socketio: bool = True
    #: Browser origins allowed to open the Socket.IO endpoint (``https://crm.example``); [] = same origin only.
    socketio_cors_origins: list[str] = Field(default_factory=list)

    @field_validator("technologies")
    @classmethod
    def _upper_technologies(cls, v: list[str]) -> list[str]:
        return [t.strip().upper() for t in v if t.strip()]

    @field_validator("endpoint_pattern")
    @classmethod
    def _valid_pattern(cls, v: str | None) -> str | None:
        import re

        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v


class MQTTConfig(Section):
    """The MQTT publisher of agent presence.

    ``url`` is ``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (TLS, verified against the system CAs
    or ``ca_file``); credentials go in ``username``/``password``, never in the URL. Topics live under
    ``<base_topic>/<node_id>/``. ``queue_size`` bounds the changes waiting for the broker; past it,
    only the latest state of each agent is kept.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="enabled url base_topic username password keepalive_s backoff_max_s client_id ca_file qos "
        "queue_size connect_timeout_s publish_timeout_s discovery discovery_prefix",
    )
    enabled: bool = False
    url: str = "mqtt://127.0.0.1:1883"
    base_topic: str = "telephonyd"
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: int = Field(30, ge=5)
    backoff_max_s: float = Field(30.0, gt=0)
    client_id: str | None = None
    ca_file: str | None = None
    qos: Literal[0, 1, 2] = 1
    queue_size: int = Field(10_000, ge=10)
    connect_timeout_s: float = Field(10.0, gt=0)
    publish_timeout_s: float = Field(10.0, gt=0)
    # Home Assistant MQTT discovery of agents (telephonyd.mqtt.discovery): off by default.
    discovery: bool = False
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put credentials in mqtt.username and mqtt.password, not in the URL")
        try:
            parts.port
        except ValueError:
            raise ValueError("bad port") from None
        return v

    @field_validator("base_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or any(c in v for c in "+#\x00"):
            raise ValueError("must be a topic without wildcards and without a leading or trailing '/'")
        return v


# ---------------------------------------------------------------------------------------------
# Sections (Ameyo callbacks, TopS.II)


class AmeyoConfig(Section):
    """The Ameyo dialer callback listener (the routes live on the HTTP listener).

    Access: ``token`` (query ``token``, header ``X-Ameyo-Token`` or ``Authorization: Bearer``) and/or
    ``allowed_networks`` (CIDRs of the client address: the peer's, or behind ``http.trusted_proxies``
    the forwarded one); with neither, the callbacks are open. TTLs are
    judged on the database clock. ``phone1_final_dispositions`` are phone-1 statuses sent at once
    instead of waiting for phone 2 (compared case-insensitively).
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        live="token allowed_networks phone1_state_ttl_s processing_ttl_s dedupe_ttl_s "
        "phone1_final_dispositions send_phone1_on_expiry timezone request_log_retention_s "
        "sweep_interval_s write_batch_max record_timeout_s",
        restart="enabled",
    )
    enabled: bool = True
    token: SecretStr | None = None
    allowed_networks: Networks = []
    phone1_state_ttl_s: float = Field(600.0, gt=0)
    processing_ttl_s: float = Field(30.0, gt=0)
    dedupe_ttl_s: float = Field(300.0, gt=0)
    phone1_final_dispositions: list[str] = ["CALL_DROP"]
    send_phone1_on_expiry: bool = True
    timezone: str = "Asia/Tokyo"
    request_log_retention_s: float = Field(30 * 86400.0, gt=0)
    sweep_interval_s: float = Field(5.0, gt=0)
    write_batch_max: int = Field(256, ge=1)
    record_timeout_s: float = Field(5.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("phone1_final_dispositions")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [d.strip().upper() for d in v if d.strip()]


class TopsTarget(Section):
    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="base_url api_key")
    base_url: str = "https://127.0.0.1"
    api_key: SecretStr | None = None


class TopsConfig(Section):
    """The TopS.II (FastHelp) predictive-call Web API.

    ``env`` PROD selects ``prod``, anything else ``test`` (the relay's INDEX_ENV rule). TLS is verified
    against the system CAs, plus ``ca_file`` when set. ``call_missing_retries``: how many times a
    reply WPRDEXTC3201 (call does not exist) is retried before the send becomes a dead letter.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="env real_send timeout_s call_missing_retries ca_file")
    env: str = "TEST"
    test: TopsTarget = TopsTarget()
    prod: TopsTarget = TopsTarget()
    real_send: bool = False
    timeout_s: float = Field(10.0, gt=0)
    call_missing_retries: int = Field(3, ge=0)
    ca_file: str | None = None

    @property
    def target(self) -> TopsTarget:
        """The environment in use: ``prod`` when ``env`` is PROD (any case), else ``test``."""
        return self.prod if self.env.strip().upper() == "PROD" else self.test


class VICIdialConfig(Section):
    """The VICIdial source: agent dispositions read from VICIdial's own database (off by default).

    ``url`` is VICIdial's MariaDB/MySQL (``mysql+aiomysql://`` with a read-only account: only
    SELECT on ``vicidial_log``, ``vicidial_closer_log``, ``vicidial_dial_log``,
    ``vicidial_statuses``, ``vicidial_campaign_statuses``). Every ``poll_interval_s`` the source
    reads at most ``batch_size`` rows per table for each of: new rows, calls still in a transient
    status (``transient_statuses``) and a sweep of the last ``reread_window_s`` seconds by
    ``call_date`` (later corrections, rows inserted with an earlier ``call_date``).
    ``late_insert_s``: how far behind the newest rows a row may be inserted (``call_date`` in the
    past) and still be found at once (per-second index counts); older ones wait for the sweep.
    ``did_match_s``: how far ``vicidial_dial_log.call_date`` may be from the call's to name its DID.
    ``fastagi_log_present``: VICIdial's FastAGI_log.pl serves port 4577 on this host; with it or
    with ``enabled``, telephonyd refuses to listen on 4577.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="enabled url fastagi_log_present poll_interval_s batch_size reread_window_s late_insert_s "
        "did_match_s statuses_refresh_s query_timeout_s transient_statuses closer_log",
    )
    enabled: bool = False
    url: SecretStr | None = None
    fastagi_log_present: bool = False
    poll_interval_s: float = Field(5.0, gt=0)
    batch_size: int = Field(1000, ge=10, le=50_000)
    reread_window_s: float = Field(7200.0, ge=60)
    late_insert_s: float = Field(120.0, ge=0)
    did_match_s: float = Field(120.0, ge=0)
    statuses_refresh_s: float = Field(300.0, gt=0)
    query_timeout_s: float = Field(10.0, gt=0)
    transient_statuses: list[str] = ["", "NEW", "QUEUE", "INCALL", "DISPO", "LIVE"]
    closer_log: bool = True

    @field_validator("url")
    @classmethod
    def _mysql_only(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value().split("://", 1)[0] not in ("mysql+aiomysql", "mariadb+aiomysql"):
            raise ValueError("must start with mysql+aiomysql:// or mariadb+aiomysql://")
        return v
