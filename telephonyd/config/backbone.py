"""Sections of the backbone: store, FastAGI, ``call_log``, HTTP, DID Optimizer, ``did_select``, outbox, logging."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ..reloadmarks import Reload, marks
from .values import Address, AddressList, HostPort, LOOPBACK, Networks, Section

# ---------------------------------------------------------------------------------------------
# Sections (backbone)


class StoreConfig(Section):
    """The durable store. SQLite (embedded default) or MariaDB/MySQL (``mysql+aiomysql://``).

    ``urls`` (or ``url`` given as a list): several servers of one MariaDB database (Galera nodes),
    tried in order at start and switched between while running when the one in use stops answering
    (`telephonyd.store.failover`); ``url`` is then the first of them.

    ``durability`` (SQLite): ``full`` (default) commits with ``synchronous=FULL``, so an acknowledged
    AGI outcome or callback survives kill -9 and a power cut; ``normal`` commits with
    ``synchronous=NORMAL`` (WAL): it survives a crash of the process, but a power cut or kernel
    crash may lose the last transactions, already acknowledged. MariaDB/MySQL: the server's own
    ``innodb_flush_log_at_trx_commit`` / ``sync_binlog`` decide, whatever this says.
    """

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(restart="url urls pool_size connect_timeout_s durability")
    url: SecretStr = SecretStr("sqlite+aiosqlite:///state/telephonyd.db")
    urls: list[SecretStr] = []
    durability: Literal["full", "normal"] = "full"
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="listen allowed_clients max_line_bytes max_block_bytes max_reply_bytes block_timeout_s "
        "command_timeout_s session_timeout_s result_timeout_s max_sessions drain_timeout_s backlog "
        "max_sessions_per_client reserved_fds",
    )
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="campaign agent lead list_id did customer_phone")
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        live="default_campaign enqueue_timeout_s",
        restart="start_ttl_s start_cache_max source",
    )
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="cert_file key_file", restart="client_ca_file")
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class PublicListenerConfig(Section):
    """An extra listener of the HTTP server answering only the routes without admin auth (the
    dialer callbacks and ``/healthz``); every admin route is 404 there. Its own ``tls``."""

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(restart="listen tls")
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        live="admin_token trusted_proxies proxy_header",
        restart="listen max_body_bytes header_timeout_s body_timeout_s max_connections "
        "max_connections_per_client tls public_listeners public_readyz console console_session_ttl_s",
    )
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="enabled base_url api_key path timeout_s")
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="campaign agent lead customer_phone state area_code")
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        live="enabled path budget_s breaker_failures breaker_cooldown_s fallback_dids record_timeout_s "
        "retention_s",
        restart="reuse_ttl_s max_connections remember_ttl_s remember_max",
    )
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

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(
        restart="write_batch_max claim_batch concurrency poll_interval_s backoff_base_s backoff_max_s "
        "lease_s delivered_retention_s prune_interval_s store_timeout_s max_attempts",
    )
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
    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="level", restart="format")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "text"] = "auto"
