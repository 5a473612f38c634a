"""Logging: one line per event to stderr, JSON when stderr is not a terminal.

Call context (``uniqueid``, ``linkedid``, ``agi_script``, ``request_id``, ``outbox_id``, ...) is set
once per session with `log_context` and lands on every line logged inside it, so one grep follows a
call end to end. `SecretFilter` replaces every configured secret with ``********`` as a last line
of defence, in the message, the extra fields and the finished line (tracebacks and nested data
included); code must still never log a secret on purpose. `update_secrets` adds the secrets of a
reloaded configuration.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("telephonyd_log_context", default={})

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line emitted inside the block (None values are left out)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context for the rest of the running task (its own context copy)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def current_context() -> dict[str, Any]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class SecretFilter(logging.Filter):
    """Replace each configured secret in the rendered message and extra fields with ``********``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Scrub ``secrets`` too (values shorter than 4 characters are ignored)."""
        known = set(self.secrets)
        for secret in secrets:
            if secret and len(secret) >= 4 and secret not in known:
                known.add(secret)
                escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
                if escaped != secret:
                    known.add(escaped)  # as it appears inside a JSON line
        self.secrets = sorted(known, key=len, reverse=True)  # longest first: a secret may hold another

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for key, value in list(vars(record).items()):
            if key not in _STD_ATTRS and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "********")
        return text


class _ScrubbingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler that scrubs the finished line as well (tracebacks, nested extra data)."""

    def __init__(self, stream: Any, secret_filter: SecretFilter) -> None:
        super().__init__(stream)
        self.secret_filter = secret_filter

    def format(self, record: logging.LogRecord) -> str:
        return self.secret_filter.scrub(super().format(record))


def update_secrets(secrets: Iterable[str]) -> None:
    """Add ``secrets`` to the filter of the handler `configure_logging` installed (SIGHUP reload)."""
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, SecretFilter):
                flt.update(secrets)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STD_ATTRS and not k.startswith("_")
        )
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f" [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = ()) -> SecretFilter:
    """Install the stderr handler on the root logger; returns the secret filter (to update on reload)."""
    secret_filter = SecretFilter(secrets)
    handler = _ScrubbingHandler(sys.stderr, secret_filter)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JSONFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return secret_filter


class LogThrottle:
    """At most one log line per event key per ``interval_s`` (seconds); the next line says how many
    were held back (``suppressed``) since the last one shown.

    For events a client can repeat at will (wrong tokens, refused or idle connections, unknown
    scripts): the log shows that they happen and how often, never one line per event. Totals belong
    in the component's metrics, which count every event. Keys are the caller's event names (a fixed,
    small set); nothing a client sends may become a key.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0,
                 clock: Any = time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(show this event now?, events held back since the last one shown)."""
        now = self._clock()
        if now - self._last.get(key, -1e18) >= self.interval_s:
            self._last[key] = now
            return True, self._held.pop(key, 0)
        self._held[key] = self._held.get(key, 0) + 1
        return False, 0

    def log(self, level: int, key: str, message: str, extra: dict[str, Any] | None = None) -> bool:
        """Log ``message`` unless an event ``key`` was logged less than ``interval_s`` ago; the line
        carries ``suppressed`` (held back since the last line) and ``repeat_interval_s``. True when
        the line was written."""
        show, held = self.allow(key)
        if show:
            self.logger.log(level, message, extra={**(extra or {}), "event": key, "suppressed": held,
                                                    "repeat_interval_s": self.interval_s})
        return show
