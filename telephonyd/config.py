"""Configuration: one YAML file, optional ``conf.d/*.yml`` beside it, environment overrides.

Load order (later wins): the file given by ``--config`` / ``TELEPHONYD_CONFIG``; every
``conf.d/*.yml`` next to it in lexical order (deep-merged: mappings merge key by key, anything else
replaces); environment variables (see `ENV_ALIASES` and the generic ``TELEPHONYD__SECTION__KEY``
form). The result is validated by pydantic; an unknown key or a bad value raises `ConfigError`
naming the dotted path (``fastagi.listen.0``), which the CLI turns into exit code 78.

Units are in the names: ``*_s`` seconds (float), ``*_bytes`` bytes.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .calls.settings import CallsConfig
from .configfiles import anchor_paths, check_readable, read_yaml
from .errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Small value types


class HostPort(BaseModel):
    """A listen or connect address: ``host:port``, ``[v6]:port``. Port 0 means "pick a free one"."""

    model_config = ConfigDict(frozen=True)
    host: str
    port: int = Field(ge=0, le=65535)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_host_port(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return {"host": host, "port": int(port)}
    return value


Address = Annotated[HostPort, BeforeValidator(_parse_host_port)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, (str, dict)) else value


AddressList = Annotated[list[Address], BeforeValidator(_one_or_many), Field(min_length=1)]


def _networks(value: Any) -> Any:
    value = _one_or_many(value)
    if isinstance(value, list):
        return [ipaddress.ip_network(str(v), strict=False) for v in value]
    return value


Networks = Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], BeforeValidator(_networks)]

LOOPBACK = ["127.0.0.0/8", "::1/128"]

#: VICIdial's FastAGI_log.pl listens here (``bin/FastAGI_log.pl``); telephonyd never takes it.
VICIDIAL_FASTAGI_PORT = 4577


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ---------------------------------------------------------------------------------------------
# Sections (backbone)


class StoreConfig(Section):
    """The durable store. SQLite (embedded default) or MariaDB/MySQL (``mysql+aiomysql://``).

    ``urls`` (or ``url`` given as a list): several servers of one MariaDB database (Galera nodes),
    tried in order at start and switched between while running when the one in use stops answering
    (`telephonyd.store.failover`); ``url`` is then the first of them.
    """

    url: SecretStr = SecretStr("sqlite+aiosqlite:///state/telephonyd.db")
    urls: list[SecretStr] = []
    pool_size: int = Field(10, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _url_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("url"), list):
            if data.get("urls"):
                raise ValueError("give store.url as a list or store.urls, not both")
            data = {**data, "urls": data["url"]}
            data.pop("url")
        if isinstance(data, dict) and data.get("urls") and "url" not in data:
            data = {**data, "url": data["urls"][0]}
        return data

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: SecretStr) -> SecretStr:
        scheme = v.get_secret_value().split("://", 1)[0]
        if scheme not in ("sqlite+aiosqlite", "mysql+aiomysql", "mariadb+aiomysql"):
            raise ValueError("must start with sqlite+aiosqlite://, mysql+aiomysql:// or mariadb+aiomysql://")
        return v

    @field_validator("urls")
    @classmethod
    def _servers(cls, v: list[SecretStr]) -> list[SecretStr]:
        for url in v:
            if url.get_secret_value().split("://", 1)[0] not in ("mysql+aiomysql", "mariadb+aiomysql"):
                raise ValueError("every URL must start with mysql+aiomysql:// or mariadb+aiomysql:// "
                                 "(failover is between servers of one MariaDB database)")
        return v

    @model_validator(mode="after")
    def _first_is_url(self) -> StoreConfig:
        if self.urls and self.urls[0].get_secret_value() != self.url.get_secret_value():
            raise ValueError("store.url must be the first of store.urls (or leave store.url out)")
        return self

    def all_urls(self) -> list[str]:
        """The servers to use, in order: ``urls``, else ``[url]``."""
        return [u.get_secret_value() for u in self.urls] or [self.url.get_secret_value()]


class FastAGIConfig(Section):
    """The FastAGI listener (Asterisk's default port is 4573; VICIdial's FastAGI_log uses 4577).

    ``max_line_bytes``/``max_block_bytes`` bound the ``agi_*`` block, ``max_reply_bytes`` one reply
    line from Asterisk. ``session_timeout_s`` runs from connect to the handler's end;
    ``result_timeout_s`` bounds the final ``SET VARIABLE TELEPHONYD_RESULT`` after it.
    ``backlog`` is the listen queue length (bursts of AGI() calls arrive together).
    ``max_sessions_per_client`` caps the sessions of one client address; when a cap is reached, the
    oldest session still waiting for its ``agi_*`` block is closed to make room (idle first).
    ``reserved_fds`` is how many file descriptors only FastAGI may use: the HTTP listener's
    connection cap is lowered so that it never takes them (see ``http.max_connections``).
    """

    listen: AddressList = [HostPort(host="127.0.0.1", port=4573)]
    allowed_clients: Networks = LOOPBACK
    max_line_bytes: int = Field(8192, ge=256)
    max_block_bytes: int = Field(64 * 1024, ge=1024)
    max_reply_bytes: int = Field(64 * 1024, ge=1024)
    block_timeout_s: float = Field(5.0, gt=0)
    command_timeout_s: float = Field(10.0, gt=0)
    session_timeout_s: float = Field(30.0, gt=0)
    result_timeout_s: float = Field(2.0, gt=0)
    max_sessions: int = Field(2000, ge=1)
    drain_timeout_s: float = Field(10.0, ge=0)
    backlog: int = Field(1024, ge=16, le=65535)
    max_sessions_per_client: int = Field(1000, ge=1)
    reserved_fds: int = Field(256, ge=16)


class CallLogVariables(Section):
    """Which channel variables feed which outcome field; the first non-empty one wins.

    Defaults are VICIdial's names (``campaign_id``, ``agent``, ``lead_id``), the DID Optimizer
    scripts' ``OPTIMIZER_DID`` and the seed dialplan's ``DID_NUMBER``.
    """

    campaign: list[str] = ["CAMPCUST", "campaign_id", "CAMPAIGN"]
    agent: list[str] = ["agent", "AGENT", "agent_id"]
    lead: list[str] = ["lead_id", "LEAD_ID"]
    list_id: list[str] = ["list_id", "LIST_ID"]
    did: list[str] = ["OPTIMIZER_DID", "DID_NUMBER"]
    customer_phone: list[str] = ["CUSTOMER_PHONE", "phone_number"]

    @field_validator("campaign", "agent", "lead", "list_id", "did", "customer_phone")
    @classmethod
    def _plain_names(cls, v: list[str]) -> list[str]:
        # Names go inside one quoted GET FULL VARIABLE expression: Asterisk splits AGI arguments on
        # blanks and treats '"' and '\\' specially; '$', '{', '}' would change the expression.
        for name in v:
            if not name or any(ch in name for ch in ' \t"\\${}') or not name.isprintable():
                raise ValueError(f"{name!r} is not a plain variable or function name")
        return v


class CallLogConfig(Section):
    """The ``call_log`` AGI handler.

    ``start_ttl_s``/``start_cache_max`` bound the in-memory start-stage records; ``source`` is the
    payload's ``source``; ``default_campaign`` the ``campaignId`` when no campaign variable is set;
    ``enqueue_timeout_s`` how long a hangup session waits for the outbox commit before answering
    ``ERROR``.
    """

    variables: CallLogVariables = CallLogVariables()
    start_ttl_s: float = Field(4 * 3600.0, gt=0)
    start_cache_max: int = Field(100_000, ge=100)
    source: str = "telephonyd"
    default_campaign: str = "DEFAULT"
    enqueue_timeout_s: float = Field(5.0, gt=0)


class HTTPTLSConfig(Section):
    """HTTPS on the HTTP listener (`telephonyd.web.tls`): PEM ``cert_file`` (chain, leaf first) and
    ``key_file``; both re-read on SIGHUP (new handshakes get the new certificate, open connections
    stay). TLS 1.2 or later with the standard library's server defaults. ``client_ca_file``: client
    certificates are asked for (not required at the handshake) and verified against it; the admin
    routes then refuse a request without a verified one (403), the callbacks do not look at it.
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class PublicListenerConfig(Section):
    """An extra listener of the HTTP server answering only the routes without admin auth (the
    dialer callbacks and ``/healthz``); every admin route is 404 there. Its own ``tls``."""

    listen: Address
    tls: HTTPTLSConfig | None = None


class HTTPConfig(Section):
    """The embedded HTTP listener: health, status, API, callbacks.

    ``public_listeners``: extra listeners for the callbacks only (`PublicListenerConfig`), so that
    ``listen`` (with the admin routes) can stay on loopback while the callbacks face the dialer.

    ``tls``: serve HTTPS instead of HTTP (see `HTTPTLSConfig`). ``trusted_proxies``: CIDRs of
    reverse proxies whose ``X-Forwarded-For`` / ``Forwarded`` headers give the client address
    (`telephonyd.web.proxies`); from any other peer those headers are ignored. ``proxy_header``:
    the one header the proxies set (``x-forwarded-for`` or RFC 7239 ``forwarded``); the other is
    never read, since a proxy passes it through as the client wrote it.

    ``header_timeout_s``: a connection must deliver a complete request head (request line and
    headers) within this many seconds of connecting or of its previous response, or it is closed.
    ``body_timeout_s``: a request body must arrive within this many seconds (else 408).
    ``max_connections``: connections open at once (lowered at start so the FastAGI listener keeps
    ``fastagi.reserved_fds`` descriptors); ``max_connections_per_client``: per client address.
    Connections beyond either cap are closed as soon as they are accepted.
    """

    listen: Address = HostPort(host="127.0.0.1", port=8088)
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    max_connections: int = Field(512, ge=1)
    max_connections_per_client: int = Field(128, ge=1)
    tls: HTTPTLSConfig | None = None
    trusted_proxies: Networks = []
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    public_listeners: list[PublicListenerConfig] = []
    # Operator's view (telephonyd.console): ``public_readyz`` answers ``/readyz`` without the admin
    # token (it reveals only ready / not ready); ``console`` serves the web console at ``GET /``.
    public_readyz: bool = False
    console: bool = False
    console_session_ttl_s: float = Field(12 * 3600.0, gt=0)


class DIDOptimizerConfig(Section):
    """The DID Optimizer API that receives one outcome per call leg."""

    enabled: bool = False
    base_url: str = "http://127.0.0.1:5000"
    api_key: SecretStr | None = None
    path: str = "/api/v1/call-results"
    timeout_s: float = Field(5.0, gt=0)


_DID_TEXT = r"^\+?[0-9]{10,15}$"


class DIDSelectVariables(Section):
    """Which channel variables feed which ``GET /api/v1/dids/next`` field; first non-empty wins.

    Defaults cover VICIdial's names and plain ones (``campaign_id``, ``agent``, ``lead_id``...).
    Without a customer phone variable the extension being dialed is used; without an area code
    variable the area code is the first three of the phone's last ten digits (NANP).
    """

    campaign: list[str] = ["CAMPCUST", "campaign_id", "CAMPAIGN"]
    agent: list[str] = ["agent", "AGENT", "agent_id"]
    lead: list[str] = ["lead_id", "LEAD_ID"]
    customer_phone: list[str] = ["CUSTOMER_PHONE", "phone_number"]
    state: list[str] = ["customer_state", "CUSTOMER_STATE", "state"]
    area_code: list[str] = ["customer_area_code", "CUSTOMER_AREA_CODE", "area_code"]

    @field_validator("campaign", "agent", "lead", "customer_phone", "state", "area_code")
    @classmethod
    def _plain_names(cls, v: list[str]) -> list[str]:
        return CallLogVariables._plain_names(v)  # the same rule: names go into one GET FULL VARIABLE


class DIDSelectConfig(Section):
    """The ``did_select`` AGI route: the caller id DID for the next call, from the DID Optimizer.

    The API is ``did_optimizer.base_url`` + ``path`` with ``did_optimizer.api_key``. A session ends
    within ``budget_s`` (hard cap 1 s) whatever the API does. ``breaker_failures`` failures in a
    row open the circuit breaker: sessions then answer at once without asking, until a probe after
    ``breaker_cooldown_s`` succeeds. ``reuse_ttl_s`` > 0 lets a failed selection reuse the last good
    DID of the same campaign and area code for that long (off by default: reuse can break the
    optimizer's rotation). ``fallback_dids`` maps a campaign (``"*"``: any other) to the DID set
    when the selection fails; without one the caller id is left alone. ``max_connections`` bounds
    the pooled keep-alive connections to the API. Selections are remembered in memory for the
    hangup's ``call_log`` for ``remember_ttl_s`` (at most ``remember_max``) and recorded in the
    store (``did_selection`` table; ``record_timeout_s`` bounds each batch write; rows older than
    ``retention_s`` are deleted).
    """

    enabled: bool = False
    path: str = "/api/v1/dids/next"
    budget_s: float = Field(0.3, gt=0, le=1.0)
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(5.0, gt=0)
    reuse_ttl_s: float = Field(0.0, ge=0, le=3600)
    fallback_dids: dict[str, Annotated[str, Field(pattern=_DID_TEXT)]] = {}
    max_connections: int = Field(64, ge=1, le=1024)
    remember_ttl_s: float = Field(4 * 3600.0, gt=0)
    remember_max: int = Field(100_000, ge=100)
    record_timeout_s: float = Field(5.0, gt=0)
    retention_s: float = Field(7 * 86400.0, gt=0)
    variables: DIDSelectVariables = DIDSelectVariables()


class OutboxConfig(Section):
    """Delivery of outbox rows: batching, concurrency, retry schedule, claim lease.

    ``write_batch_max`` rows at most per group commit; ``claim_batch`` rows per claim query;
    ``concurrency`` sends at once; retries wait ``backoff_base_s`` doubling up to ``backoff_max_s``
    (full jitter); a claim lasts ``lease_s`` (a send is cut off at 80 % of it); delivered rows are
    deleted after ``delivered_retention_s`` (checked every ``prune_interval_s``); every store
    operation is bounded by ``store_timeout_s``; ``max_attempts`` > 0 dead-letters a row after that
    many failed attempts.
    """

    write_batch_max: int = Field(256, ge=1)
    claim_batch: int = Field(64, ge=1)
    concurrency: int = Field(8, ge=1, le=256)
    poll_interval_s: float = Field(1.0, gt=0)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    lease_s: float = Field(60.0, gt=0)
    delivered_retention_s: float = Field(7 * 86400.0, gt=0)
    prune_interval_s: float = Field(300.0, gt=0)
    store_timeout_s: float = Field(15.0, gt=0)
    max_attempts: int = Field(0, ge=0, description="0: retry until delivered or dead-lettered by the peer")


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"


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
    base_url: str = "https://127.0.0.1"
    api_key: SecretStr | None = None


class TopsConfig(Section):
    """The TopS.II (FastHelp) predictive-call Web API.

    ``env`` PROD selects ``prod``, anything else ``test`` (the relay's INDEX_ENV rule). TLS is verified
    against the system CAs, plus ``ca_file`` when set. ``call_missing_retries``: how many times a
    reply WPRDEXTC3201 (call does not exist) is retried before the send becomes a dead letter.
    """

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


# ---------------------------------------------------------------------------------------------


class Config(Section):
    """The whole configuration. See config/telephonyd.yml for a commented example."""

    node_id: str = Field("ast1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    allow_readable_secrets: bool = False
    store: StoreConfig = StoreConfig()
    fastagi: FastAGIConfig = FastAGIConfig()
    call_log: CallLogConfig = CallLogConfig()
    http: HTTPConfig = HTTPConfig()
    did_optimizer: DIDOptimizerConfig = DIDOptimizerConfig()
    did_select: DIDSelectConfig = DIDSelectConfig()
    outbox: OutboxConfig = OutboxConfig()
    logging: LoggingConfig = LoggingConfig()
    ami: AMIConfig = AMIConfig()
    ps_contacts: PSContactsConfig = PSContactsConfig()
    presence: PresenceConfig = PresenceConfig()
    mqtt: MQTTConfig = MQTTConfig()
    ameyo: AmeyoConfig = AmeyoConfig()
    tops: TopsConfig = TopsConfig()
    calls: CallsConfig = CallsConfig()
    vicidial: VICIdialConfig = VICIdialConfig()

    @model_validator(mode="after")
    def _beside_fastagi_log(self) -> Config:
        # VICIdial's FastAGI_log.pl owns 4577: taking it stops VICIdial ending its call_log rows,
        # writing vicidial_carrier_log and freeing agents after hangups.
        if self.vicidial.enabled or self.vicidial.fastagi_log_present:
            if any(a.port == VICIDIAL_FASTAGI_PORT for a in self.fastagi.listen):
                raise ValueError(
                    f"fastagi.listen includes port {VICIDIAL_FASTAGI_PORT}, VICIdial's FastAGI_log.pl port; "
                    "telephonyd runs beside it (default 4573), never instead of it"
                )
        if self.vicidial.enabled and self.vicidial.url is None:
            raise ValueError("vicidial.enabled needs vicidial.url (VICIdial's database, read-only account)")
        return self

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by ``'********'``."""
        data = self.model_dump(mode="json")
        data["store"]["url"] = _redact_url(self.store.url.get_secret_value())
        data["store"]["urls"] = [_redact_url(u.get_secret_value()) for u in self.store.urls]
        if self.ps_contacts.url is not None:
            data["ps_contacts"]["url"] = _redact_url(self.ps_contacts.url.get_secret_value())
        if self.vicidial.url is not None:
            data["vicidial"]["url"] = _redact_url(self.vicidial.url.get_secret_value())
        return data

    def secrets(self) -> list[str]:
        """Every configured secret value (for log and response scrubbing tests and filters)."""
        found: list[str] = []
        _collect_secrets(self, found)
        for url in (self.store.url, self.ps_contacts.url, self.vicidial.url):
            if url is not None:
                found.remove(url.get_secret_value())
                found.append(_url_password(url.get_secret_value()))
        found.extend(_url_password(u.get_secret_value()) for u in self.store.urls)
        return [s for s in found if s]


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:********@{hostpart}" if ":" in userinfo else url


def _url_password(url: str) -> str:
    rest = url.partition("://")[2]
    userinfo = rest.rpartition("@")[0]
    return userinfo.partition(":")[2] if userinfo else ""


def _collect_secrets(model: BaseModel, out: list[str]) -> None:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            _collect_secrets(value, out)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, BaseModel):
                    _collect_secrets(item, out)


# ---------------------------------------------------------------------------------------------
# Loading

#: Environment variables understood besides ``TELEPHONYD__SECTION__KEY``. The upper block keeps the
#: names of the PHP relay that the Ameyo listener replaces, so an operator moves over unchanged.
ENV_ALIASES: dict[str, str] = {
    "TELEPHONYD_NODE_ID": "node_id",
    "TELEPHONYD_STORE_URL": "store.url",
    "TELEPHONYD_ADMIN_TOKEN": "http.admin_token",
    "TELEPHONYD_DID_OPTIMIZER_API_KEY": "did_optimizer.api_key",
    "TELEPHONYD_AMI_SECRET": "ami.secret",
    "TELEPHONYD_MQTT_PASSWORD": "mqtt.password",
    "TELEPHONYD_AMEYO_TOKEN": "ameyo.token",
    "TEST_BASE_URL": "tops.test.base_url",
    "PROD_BASE_URL": "tops.prod.base_url",
    "TEST_API_KEY": "tops.test.api_key",
    "PROD_API_KEY": "tops.prod.api_key",
    "INDEX_ENV": "tops.env",
    "ENABLE_REAL_SEND": "tops.real_send",
    "PHONE1_STATE_TTL_SECONDS": "ameyo.phone1_state_ttl_s",
    "REQUEST_PROCESSING_TTL_SECONDS": "ameyo.processing_ttl_s",
    "REQUEST_DEDUPE_TTL_SECONDS": "ameyo.dedupe_ttl_s",
}

_GENERIC_PREFIX = "TELEPHONYD__"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """The part of the configuration set by environment variables, as nested data."""
    data: dict[str, Any] = {}
    for name, dotted in ENV_ALIASES.items():
        if environ.get(name, "") != "":
            _set_dotted(data, dotted, environ[name])
    for name, value in environ.items():
        if name.startswith(_GENERIC_PREFIX) and len(name) > len(_GENERIC_PREFIX):
            dotted = ".".join(p.lower() for p in name[len(_GENERIC_PREFIX):].split("__"))
            _set_dotted(data, dotted, yaml.safe_load(value) if value else value)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml(path)


def config_files(path: Path) -> list[Path]:
    """The main file and the ``conf.d/*.yml`` files beside it, in merge order."""
    conf_d = path.parent / "conf.d"
    if not conf_d.is_dir():
        return [path]
    try:
        names = os.listdir(conf_d)  # glob() would skip an unreadable directory without a word
    except OSError as exc:
        raise ConfigError(f"cannot read {conf_d}: {exc.strerror}") from None
    extra = [conf_d / name for name in names if name.endswith((".yml", ".yaml"))]
    return [path, *sorted(extra, key=lambda p: p.name)]


def validate(data: dict[str, Any]) -> Config:
    """Validate raw data into a `Config`; the first error raises `ConfigError` with its dotted path."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"]) or None
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(message, path) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
) -> Config:
    """Load, merge and validate the configuration.

    ``path`` defaults to ``$TELEPHONYD_CONFIG``; with neither, the built-in defaults apply (plus the
    environment). With a file, relative file paths (the SQLite file of ``store.url`` and
    ``ps_contacts.url``, the built-in default included; ``*.ca_file``) are taken relative to that
    file's directory, not the working directory. Raises `ConfigError` (exit 78) on missing or
    unreadable files (naming the path and the reason), bad YAML, a key repeated in one mapping
    (naming both lines), unknown keys and bad values, and when the file holds secrets while others
    may read it (unless ``allow_readable_secrets: true``).
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("TELEPHONYD_CONFIG") or None
    data: dict[str, Any] = {}
    files: list[Path] = []
    if path is not None:
        main = Path(path)
        check_readable(main)
        files = config_files(main)
        for file in files:
            data = deep_merge(data, _read_yaml(file))
    data = deep_merge(data, env_overrides(environ))
    if path is not None:
        default_store = StoreConfig.model_fields["url"].default.get_secret_value()
        data = anchor_paths(data, Path(os.path.abspath(path)).parent, {"store.url": default_store})
    config = validate(data)
    if not config.allow_readable_secrets:
        for file in files:
            _refuse_world_readable_secrets(file)
    return config


_SECRET_KEYS = ("admin_token", "api_key", "secret", "password", "token")


def _refuse_world_readable_secrets(file: Path) -> None:
    mode = file.stat().st_mode
    if not mode & stat.S_IROTH:
        return
    raw = _read_yaml(file)
    if _holds_secret(raw) or _holds_url_password(raw):
        raise ConfigError(
            f"{file} holds secrets and is readable by others; chmod o-r it "
            "(or set allow_readable_secrets: true)"
        )


def _holds_secret(data: Any) -> bool:
    if isinstance(data, dict):
        return any(
            (k in _SECRET_KEYS and v not in (None, "")) or _holds_secret(v) for k, v in data.items()
        )
    return False


def _holds_url_password(data: dict[str, Any]) -> bool:
    for section in ("store", "ps_contacts", "vicidial"):
        block = data.get(section) if isinstance(data.get(section), dict) else {}
        for key in ("url", "urls"):
            value = block.get(key)
            for url in value if isinstance(value, list) else [value]:
                if isinstance(url, str) and "://" in url and "@" in url.split("://", 1)[1]:
                    userinfo = url.split("://", 1)[1].split("@", 1)[0]
                    if ":" in userinfo:
                        return True
    return False
