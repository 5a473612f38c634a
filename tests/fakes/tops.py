"""A fake TopS.II (FastHelp predictive-call Web API) on a real loopback socket.

It checks the exact wire format of every request (POST, path, form field ``jsonData`` only, header
``X-FastHelp-API-Key``, the root key of the API, required fields, ``callId`` a JSON number, times
``YYYY-MM-DD HH:mm:ss``, no ``subCtiHistoryId`` in createNotAnswer) and records what it got. A
request that breaks the format is answered HTTP 400 and listed in ``violations``.

Replies follow the real API: HTTP 200 with ``result`` success or fail plus codes. Per callId a
script of replies can be queued (`script`); otherwise ``default`` answers. `Reply` builds success,
each fail code, a plain HTTP status (500), a slow answer, or none at all (`Reply.hang`).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_PATH = "/fasthelp5-server/service/callmanage/predictiveCallApiService/"
ROOTS = {
    "createCallStart": "predictiveCallCreateCallStart",
    "createCallEnd": "predictiveCallCreateCallEnd",
    "createNotAnswer": "predictiveCallCreateNotAnswer",
}
REQUIRED = {
    "createCallStart": {"callId", "predictiveStaffId", "targetTel"},
    "createCallEnd": {"callId", "callStartTime", "callEndTime", "subCtiHistoryId", "targetTel", "predictiveStaffId"},
    "createNotAnswer": {"callId", "callTime", "errorInfo1"},
}
OPTIONAL = {"createCallStart": set(), "createCallEnd": {"errorInfo"}, "createNotAnswer": {"errorInfo2"}}
TIME_FIELDS = {"callStartTime", "callEndTime", "callTime"}
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


class WireViolation(Exception):
    """A request that breaks TopS.II's wire format."""


@dataclass(frozen=True)
class Reply:
    kind: str = "success"  # success, fail, status, hang
    code: str | None = None
    sub: str | None = None
    status: int = 200
    delay_s: float = 0.0

    @classmethod
    def success(cls, delay_s: float = 0.0) -> Reply:
        return cls("success", delay_s=delay_s)

    @classmethod
    def fail(cls, code: str, sub: str | None = None) -> Reply:
        return cls("fail", code=code, sub=sub)

    @classmethod
    def http(cls, status: int) -> Reply:
        return cls("status", status=status)

    @classmethod
    def hang(cls) -> Reply:
        return cls("hang")


@dataclass
class Received:
    api: str
    fields: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    json_data: str = ""  # the form field exactly as sent


class FakeTops:
    def __init__(self, api_key: str = "k" * 32) -> None:
        self.api_key = api_key
        self.default = Reply.success()
        self.scripts: dict[int, deque[Reply]] = defaultdict(deque)
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.sends_by_call: Counter[int] = Counter()
        self.accepted_by_call: Counter[int] = Counter()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, call_id: int, *replies: Reply) -> None:
        """Answer the next requests for ``call_id`` with ``replies`` in order, then ``default``."""
        self.scripts[call_id].extend(replies)

    def of(self, api: str) -> list[Received]:
        return [r for r in self.received if r.api == api]

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen on 127.0.0.1, port 0 (HTTPS with ``ssl_context``); returns the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds (re-checked on every request), or fail."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if predicate(self):
                    return
                await self._changed.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            api, fields, json_data = await self._check(request)
        except WireViolation as exc:
            self.violations.append(str(exc))
            self._poke()
            return web.json_response({"violation": str(exc)}, status=400)
        call_id = fields["callId"]
        self.received.append(Received(api, fields, dict(request.headers), json_data=json_data))
        self.sends_by_call[call_id] += 1
        queue = self.scripts.get(call_id)
        reply = queue.popleft() if queue else self.default
        self._poke()
        if reply.kind == "hang":
            await self._closing.wait()
            raise web.HTTPServiceUnavailable()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # the peer is slow on purpose
        if reply.kind == "status":
            return web.Response(status=reply.status, text="<html>Internal Server Error</html>", content_type="text/html")
        if reply.kind == "fail":
            return web.json_response({"result": "fail", "messageCode": reply.code, "message": "error",
                                      "subMessageCode": reply.sub or "", "subMessage": ""})
        self.accepted_by_call[call_id] += 1
        self._poke()
        return web.json_response({"result": "success", "messageCode": "", "message": ""})

    def _poke(self) -> None:
        self._changed.set()

    async def _check(self, request: web.Request) -> tuple[str, dict[str, Any], str]:
        if request.method != "POST":
            raise WireViolation(f"method {request.method}")
        if not request.path.startswith(API_PATH) or not request.path.endswith(".json"):
            raise WireViolation(f"path {request.path}")
        api = request.path[len(API_PATH):-len(".json")]
        if api not in ROOTS:
            raise WireViolation(f"unknown API {api}")
        if request.content_type != "application/x-www-form-urlencoded":
            raise WireViolation(f"content type {request.content_type}")
        if request.headers.get("X-FastHelp-API-Key") != self.api_key:
            raise WireViolation("missing or wrong X-FastHelp-API-Key")
        form = await request.post()
        if set(form.keys()) != {"jsonData"}:
            raise WireViolation(f"form fields {sorted(form.keys())}")
        try:
            data = json.loads(str(form["jsonData"]))
        except ValueError:
            raise WireViolation("jsonData is not JSON") from None
        if not isinstance(data, dict) or list(data) != [ROOTS[api]]:
            raise WireViolation(f"root keys {list(data) if isinstance(data, dict) else type(data).__name__} for {api}")
        fields = data[ROOTS[api]]
        missing = REQUIRED[api] - {k for k, v in fields.items() if v not in (None, "")}
        if missing:
            raise WireViolation(f"{api} misses {sorted(missing)}")
        unknown = set(fields) - REQUIRED[api] - OPTIONAL[api]
        if unknown:
            raise WireViolation(f"{api} has unknown fields {sorted(unknown)}")
        if not isinstance(fields["callId"], int) or isinstance(fields["callId"], bool):
            raise WireViolation(f"callId is not a number: {fields['callId']!r}")
        for name in TIME_FIELDS & set(fields):
            if not TIME_RE.match(str(fields[name])):
                raise WireViolation(f"{name} {fields[name]!r} is not YYYY-MM-DD HH:mm:ss")
        return api, fields, str(form["jsonData"])
