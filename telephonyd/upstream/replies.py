"""Judging HTTP replies of upstream APIs (pure; shared by every upstream sender).

Upstreams answer with HTML error pages from a CDN, plain-text rate-limit bodies and 200s that
carry a failure in the body, so a reply is judged by status AND body, and a body is never assumed
to be JSON. `classify_status` settles everything the status alone decides; the caller judges the
body of a 2xx with its API's own rules.

| status | outcome |
|---|---|
| 2xx | the caller decides from the body |
| 3xx | retry, target unhealthy (``base_url`` points at a redirect) |
| 401 | dead, target unhealthy (the API key is missing or wrong; a person must act) |
| 408, 429 | retry (429 honours Retry-After) |
| other 4xx | dead with the reason |
| 5xx | retry (honours Retry-After) |
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any

from ..outbox.model import Delivery

#: Characters of a reply body kept in errors and responses.
EXCERPT_CHARS = 200
#: Bytes of a reply body read at most.
MAX_BODY_BYTES = 64 * 1024


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """The body as one line of at most ``limit`` characters (undecodable bytes replaced)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return " ".join(text.split())[:limit]


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body parsed as a JSON object, or None (not JSON, or JSON but not an object)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP-date (RFC 9110 10.2.3).

    None when absent or unreadable; a date in the past gives 0. ``now`` is epoch seconds.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def failure_text(status: int, body: bytes, fields: Iterable[str] = ("message", "error")) -> str:
    """``HTTP <status>: <reason>``: the first non-empty string ``fields`` of a JSON body, else an
    excerpt of the raw body."""
    data = json_object(body)
    if data is not None:
        for name in fields:
            value = data.get(name)
            if isinstance(value, str) and value.strip():
                return f"HTTP {status}: {excerpt(value)}"
    text = excerpt(body)
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


def classify_status(status: int, body: bytes, retry_after: str | None = None, now: float | None = None) -> Delivery | None:
    """The `Delivery` that the status alone decides, or None for a 2xx (judge the body)."""
    if 200 <= status < 300:
        return None
    error = failure_text(status, body)
    if 300 <= status < 400:
        return Delivery("retry", error=f"{error} (redirect: check base_url)", status=status, unhealthy=True)
    if status == 401:
        return Delivery("dead", error=error, status=status, unhealthy=True)
    if status in (408, 429) or status >= 500:
        return Delivery("retry", error=error, status=status, retry_after_s=retry_after_seconds(retry_after, now))
    if 400 <= status < 500:
        return Delivery("dead", error=error, status=status)
    return Delivery("retry", error=f"unexpected HTTP status {status}", status=status)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced by ``********``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text
