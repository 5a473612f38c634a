"""The whole configuration (`Config`) and its secrets."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    model_validator,
)

from ..calls.settings import CallsConfig
from ..reloadmarks import Reload, marks
from .values import Section, VICIDIAL_FASTAGI_PORT
from .backbone import CallLogConfig, DIDOptimizerConfig, DIDSelectConfig, FastAGIConfig, HTTPConfig, LoggingConfig, OutboxConfig, StoreConfig
from .edges import AMIConfig, AmeyoConfig, MQTTConfig, PSContactsConfig, PresenceConfig, TopsConfig, VICIdialConfig

# ---------------------------------------------------------------------------------------------


class Config(Section):
    """The whole configuration. See config/telephonyd.yml for a commented example."""

    #: SIGHUP: which fields apply live, which need a restart (see telephonyd/reload.py).
    RELOAD: ClassVar[dict[str, Reload]] = marks(live="allow_readable_secrets", restart="node_id")
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
