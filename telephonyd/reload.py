"""SIGHUP reload: apply the parts of a new, already validated config that can change live.

Live: ``http.admin_token``, ``http.trusted_proxies``, ``http.proxy_header``, the HTTPS certificate
(``http.tls.cert_file``/``key_file``: the files are re-read on every SIGHUP, changed or not, so a
renewed certificate is picked up), ``logging.level``, the upstream sections (``did_optimizer``, ``tops``:
URLs, keys, timeouts, enabled), ``ameyo`` tokens and TTLs, ``call_log`` variable names, ``did_select``
(but ``max_connections``, ``reuse_ttl_s``, ``remember_*``). Anything else
(listen addresses, ``http.public_listeners`` (whose certificates are re-read too), turning
``http.tls`` on or off, ``http.tls.client_ca_file``, ``store.url``, ``node_id``, the AMI connection
and ``ami.tls``) needs a restart and is named in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from .config import Config
from .logs import update_secrets

log = logging.getLogger(__name__)

LIVE_SECTIONS = {"http", "logging", "did_optimizer", "tops", "ameyo", "call_log", "outbox", "presence", "did_select"}
RESTART_KEYS = {"http.listen", "outbox.write_batch_max", "http.header_timeout_s", "http.body_timeout_s",
                "http.max_connections", "http.max_connections_per_client", "http.tls", "http.tls.client_ca_file",
                "http.public_listeners", "did_select.max_connections", "did_select.reuse_ttl_s",
                "did_select.remember_ttl_s", "did_select.remember_max"}


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


def apply_reload(app: Any, new: Config) -> list[str]:
    """Apply live changes to ``app``; returns the keys that still need a restart."""
    changes = changed_keys(app.config, new)
    need_restart = [k for k in changes if k.split(".")[0] not in LIVE_SECTIONS or k in RESTART_KEYS]
    live = [k for k in changes if k not in need_restart]
    if app.http is not None:
        app.http.set_admin_token(new.http.admin_token.get_secret_value() if new.http.admin_token else None)
        app.http.set_trusted_proxies(new.http.trusted_proxies, new.http.proxy_header)
        # The listener keeps the TLS mode and client CAs it started with; its certificate is re-read.
        running_tls = app.config.http.tls if {"http.tls", "http.tls.client_ca_file",
                "http.public_listeners"} & set(changes) else new.http.tls
        if running_tls is not None or app.config.http.public_listeners:
            app.http.reload_tls(running_tls, app.config.http.public_listeners)
    logging.getLogger().setLevel(new.logging.level)
    for name in ("did_sender", "tops_sender", "calllog_handler", "ameyo_service", "presence_service", "did_select"):
        target = getattr(app, name, None)
        reconfigure = getattr(target, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(new)
    if app.outbox is not None and "did_optimizer.enabled" in changes and getattr(app, "did_sender", None):
        app.register_sender("did_optimizer", app.did_sender, enabled=new.did_optimizer.enabled)
    kept = new.model_copy(update={k: getattr(app.config, k) for k in type(new).model_fields
                                  if any(r.split(".")[0] == k for r in need_restart)})
    app.config = kept
    update_secrets(new.secrets())  # the old ones stay scrubbed too: they may still be quoted somewhere
    log.info("configuration reloaded", extra={"changed": live, "needs_restart": need_restart})
    if need_restart:
        log.warning("some changes need a restart", extra={"needs_restart": need_restart})
    return need_restart
