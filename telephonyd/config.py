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
)

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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ---------------------------------------------------------------------------------------------
# Sections (backbone)


class StoreConfig(Section):
    """The durable store. SQLite (embedded default) or MariaDB/MySQL (``mysql+aiomysql://``)."""

    url: SecretStr = SecretStr("sqlite+aiosqlite:///state/telephonyd.db")
    pool_size: int = Field(10, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: SecretStr) -> SecretStr:
        scheme = v.get_secret_value().split("://", 1)[0]
        if scheme not in ("sqlite+aiosqlite", "mysql+aiomysql", "mariadb+aiomysql"):
            raise ValueError("must start with sqlite+aiosqlite://, mysql+aiomysql:// or mariadb+aiomysql://")
        return v


class FastAGIConfig(Section):
    """The FastAGI listener (Asterisk's default port is 4573; VICIdial's FastAGI_log uses 4577).

    ``max_line_bytes``/``max_block_bytes`` bound the ``agi_*`` block, ``max_reply_bytes`` one reply
    line from Asterisk. ``session_timeout_s`` runs from connect to the handler's end;
    ``result_timeout_s`` bounds the final ``SET VARIABLE TELEPHONYD_RESULT`` after it.
    ``backlog`` is the listen queue length (bursts of AGI() calls arrive together).
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


class CallLogVariables(Section):
    """Which channel variables feed which outcome field; the first non-empty one wins.

    Defaults are VICIdial's names (``campaign_id``, ``agent``, ``lead_id``, ``OPTIMIZER_DID``).
    """

    campaign: list[str] = ["CAMPCUST", "campaign_id", "CAMPAIGN"]
    agent: list[str] = ["agent", "AGENT", "agent_id"]
    lead: list[str] = ["lead_id", "LEAD_ID"]
    list_id: list[str] = ["list_id", "LIST_ID"]
    did: list[str] = ["OPTIMIZER_DID"]
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


class HTTPConfig(Section):
    """The embedded HTTP listener: health, status, API, callbacks."""

    listen: Address = HostPort(host="127.0.0.1", port=8088)
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(64 * 1024, ge=1024)


class DIDOptimizerConfig(Section):
    """The DID Optimizer API that receives one outcome per call leg."""

    enabled: bool = False
    base_url: str = "http://127.0.0.1:5000"
    api_key: SecretStr | None = None
    path: str = "/api/v1/call-results"
    timeout_s: float = Field(5.0, gt=0)


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


class AMIConfig(Section):
    """The AMI client (Asterisk manager, port 5038).

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
    ``allowed_networks`` (CIDRs of the peer address); with neither, the callbacks are open. TTLs are
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
    outbox: OutboxConfig = OutboxConfig()
    logging: LoggingConfig = LoggingConfig()
    ami: AMIConfig = AMIConfig()
    ps_contacts: PSContactsConfig = PSContactsConfig()
    presence: PresenceConfig = PresenceConfig()
    mqtt: MQTTConfig = MQTTConfig()
    ameyo: AmeyoConfig = AmeyoConfig()
    tops: TopsConfig = TopsConfig()

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by ``'********'``."""
        data = self.model_dump(mode="json")
        data["store"]["url"] = _redact_url(self.store.url.get_secret_value())
        if self.ps_contacts.url is not None:
            data["ps_contacts"]["url"] = _redact_url(self.ps_contacts.url.get_secret_value())
        return data

    def secrets(self) -> list[str]:
        """Every configured secret value (for log and response scrubbing tests and filters)."""
        found: list[str] = []
        _collect_secrets(self, found)
        for url in (self.store.url, self.ps_contacts.url):
            if url is not None:
                found.remove(url.get_secret_value())
                found.append(_url_password(url.get_secret_value()))
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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def config_files(path: Path) -> list[Path]:
    """The main file and the ``conf.d/*.yml`` files beside it, in merge order."""
    conf_d = path.parent / "conf.d"
    extra = sorted(conf_d.glob("*.yml")) + sorted(conf_d.glob("*.yaml")) if conf_d.is_dir() else []
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
    environment). Raises `ConfigError` (exit 78) on unreadable files, bad YAML, unknown keys and
    bad values, and when the file holds secrets while others may read it (unless
    ``allow_readable_secrets: true``).
    """
    environ = os.environ if environ is None else environ
    path = path or environ.get("TELEPHONYD_CONFIG") or None
    data: dict[str, Any] = {}
    files: list[Path] = []
    if path is not None:
        main = Path(path)
        if not main.is_file():
            raise ConfigError(f"config file {main} does not exist")
        files = config_files(main)
        for file in files:
            data = deep_merge(data, _read_yaml(file))
    data = deep_merge(data, env_overrides(environ))
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
    for section in ("store", "ps_contacts"):
        url = (data.get(section) or {}).get("url") if isinstance(data.get(section), dict) else None
        if isinstance(url, str) and "://" in url and "@" in url.split("://", 1)[1]:
            userinfo = url.split("://", 1)[1].split("@", 1)[0]
            if ":" in userinfo:
                return True
    return False
