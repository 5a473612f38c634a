"""Small value types shared by the sections: ``host:port`` addresses, networks, the section base."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

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
