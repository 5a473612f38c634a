"""SIGHUP reload: apply the parts of a new, already validated config that can change live.

Each config field is marked live or restart on its section (``RELOAD`` in `telephonyd.config`,
see `telephonyd.reloadmarks`): a reload applies every changed live field and names every changed
restart field in ``needs_restart``; nothing is reported as applied that is not. Live fields reach
the running parts through the reloaders the features declared (each a ``reconfigure(config)``,
`telephonyd.feature.Feature.reloaders`); the HTTP listener's token, trusted proxies and
certificates are applied here. The HTTPS certificate files (``http.tls`` and each public
listener's) are re-read on every SIGHUP, changed or not, so a renewed certificate is picked up.
`reload_config` returns the config to run with; the app keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .config import Config
from .logs import update_secrets
from .reloadmarks import mark_of

log = logging.getLogger(__name__)

#: A part that applies the live fields of a reloaded config (``reconfigure(config)``).
Reloader = Callable[[Config], None]


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs (secrets compared by value, reported by name only)."""
    out: list[str] = []
    _diff(_plain(old), _plain(new), "", out)
    return out


def _plain(config: Config) -> dict[str, Any]:
    data = config.model_dump(mode="python")
    return _unwrap(data)


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if hasattr(value, "get_secret_value"):
        return ("secret", value.get_secret_value())
    return value


def _diff(a: Any, b: Any, prefix: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key, out)
    elif a != b:
        out.append(prefix)


def needs_restart(changes: list[str]) -> list[str]:
    """The changed dotted keys whose field is marked restart."""
    return [k for k in changes if mark_of(Config, k) == "restart"]


class ReloadableHTTP(Protocol):
    """What a reload applies on the HTTP listener (`telephonyd.web.HTTPServer`)."""

    def set_admin_token(self, token: str | None) -> None: ...
    def set_trusted_proxies(self, networks: Any, header: str | None = None) -> None: ...
    def reload_tls(self, config: Any, public: Any = ()) -> bool: ...


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The outcome of a reload: ``config`` is the one to run with from now on (``new`` but for the
    sections holding a restart key, which keep their running value); ``needs_restart`` names the
    changed keys that were not applied."""

    config: Config
    needs_restart: list[str]


def reload_config(running: Config, new: Config, *, http: ReloadableHTTP | None,
                  reloaders: Iterable[Reloader]) -> Reloaded:
    """Apply the live changes from ``running`` to ``new``: on ``http`` (token, trusted proxies,
    certificates re-read) and through each of ``reloaders``; see `Reloaded`."""
    changes = changed_keys(running, new)
    need_restart = needs_restart(changes)
    live = [k for k in changes if k not in need_restart]
    if http is not None:
        http.set_admin_token(new.http.admin_token.get_secret_value() if new.http.admin_token else None)
        http.set_trusted_proxies(new.http.trusted_proxies, new.http.proxy_header)
        # The listener keeps the TLS mode and client CAs it started with; its certificate is re-read.
        running_tls = running.http.tls if {"http.tls", "http.tls.client_ca_file",
                "http.public_listeners"} & set(changes) else new.http.tls
        if running_tls is not None or running.http.public_listeners:
            http.reload_tls(running_tls, running.http.public_listeners)
    logging.getLogger().setLevel(new.logging.level)
    for reconfigure in reloaders:
        reconfigure(new)
    kept = dict(running)
    config = new.model_copy(update={k.split(".")[0]: kept[k.split(".")[0]] for k in need_restart})
    update_secrets(new.secrets())  # the old ones stay scrubbed too: they may still be quoted somewhere
    log.info("configuration reloaded", extra={"changed": live, "needs_restart": need_restart})
    if need_restart:
        log.warning("some changes need a restart", extra={"needs_restart": need_restart})
    return Reloaded(config, need_restart)
