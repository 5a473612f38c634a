"""One HTTP exchange with an upstream over a shared `aiohttp.ClientSession`, bounded in time and size.

Transport failures (timeout, refused or reset connection, broken body) raise `UpstreamError` with
``retryable=True``; any HTTP status, even 500, is a reply for the caller to judge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from ..errors import UpstreamError
from .replies import MAX_BODY_BYTES, scrub


#: The request header that carries `OutboxRow.idempotency_key` on every upstream send.
IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_header(key: str) -> dict[str, str]:
    """``{"Idempotency-Key": key}`` with anything outside visible ASCII percent-encoded (a uniqueid
    or a dialer's id could hold control characters, which a header must not)."""
    return {IDEMPOTENCY_HEADER: quote(key, safe=":/.-_~|@+=,;!*'()$&#")}


@dataclass(frozen=True, slots=True)
class HTTPReply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False


async def read_body(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), not response.content.at_eof()


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str | yarl.URL,
    *,
    timeout_s: float,
    secrets: Iterable[str | None] = (),
    **kwargs: Any,
) -> HTTPReply:
    """Send one request and read the reply (status, headers, at most `MAX_BODY_BYTES` of body).

    ``timeout_s`` bounds connect, send and the whole body read. Redirects are not followed.
    ``secrets`` are scrubbed from error texts. Raises `UpstreamError` (retryable) on transport
    failures.
    """
    try:
        async with asyncio.timeout(timeout_s):
            async with session.request(method, url, allow_redirects=False, **kwargs) as response:
                body, truncated = await read_body(response)
                return HTTPReply(response.status, response.headers, body, truncated)
    except TimeoutError:
        raise UpstreamError(f"no reply within {timeout_s:g}s", retryable=True) from None
    except aiohttp.ClientError as exc:
        text = scrub(f"{type(exc).__name__}: {exc}", secrets)
        raise UpstreamError(text[:500], retryable=True) from None
