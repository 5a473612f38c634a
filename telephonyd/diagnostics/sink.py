"""A stand-in upstream for trying telephonyd without the real DID Optimizer or TopS.II.

``telephonyd sink`` listens (loopback by default) and answers every POST the way the DID
Optimizer's API answers a report it accepted: ``200`` with ``{"success": true}`` (see
`telephonyd.upstream.did_optimizer.classify_reply`); each request is printed (method, path,
``Idempotency-Key``, the JSON body) with its headers' secrets left out (``x-api-key``,
``Authorization`` are shown as ``********``). It keeps nothing and is not a test fake: it is what a
newcomer points ``did_optimizer.base_url`` at to watch an outcome leave the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

#: Headers shown with each request; the secret ones are masked.
SHOWN_HEADERS = ("Idempotency-Key", "X-Request-ID", "x-api-key", "Authorization")
SECRET_HEADERS = frozenset({"x-api-key", "authorization"})


def describe(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """The lines printed for one request: ``POST /path``, the shown headers, the body (JSON indented)."""
    lines = [f"{method} {path}"]
    lower = {k.lower(): v for k, v in headers.items()}
    for name in SHOWN_HEADERS:
        value = lower.get(name.lower())
        if value is not None:
            lines.append(f"  {name}: {'********' if name.lower() in SECRET_HEADERS else value}")
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        text = body.decode("utf-8", "replace")
    lines += ["  " + line for line in text.splitlines()]
    return "\n".join(lines)


def sink_app(out: Callable[[str], Any]) -> web.Application:
    """An aiohttp application answering every POST ``{"success": true}`` and every GET ``{"ok": true}``."""

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        out(describe(request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"success": True, "message": "accepted by telephonyd sink"})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/{tail:.*}", accept)
    app.router.add_put("/{tail:.*}", accept)
    app.router.add_get("/{tail:.*}", health)
    return app
