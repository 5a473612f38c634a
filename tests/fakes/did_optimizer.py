"""A fake DID Optimizer API on 127.0.0.1 (port 0), speaking like the real one (``upstreams.md``).

``POST /api/v1/call-results`` by default behaves as the real server: 401
``{success:false, message:"API key required"|"Invalid API key"}`` when an ``api_key`` is set and
the ``x-api-key`` header is missing or wrong; 400 ``{success:false, error:"Missing required
fields..."}`` without ``uniqueid``, ``phoneNumber`` or ``campaignId``; else 200
``{success:true, message:"Call result recorded", data:{recordId, uniqueid, disposition}}``.

Each request can be scripted instead (`script`: a queue consumed one reply per request), with
the replies real deployments give: `Reply.error(500)`, `Reply.rate_limited("2")` (plain text
with Retry-After), `Reply.html(502)` (a CDN page), `Reply.success_false()`, `Reply.unauthorized()`,
`Reply.bad_request()`, `Reply.never_answers()` (holds the request until the fake stops).

``GET /api/v1/dids/next`` (DID selection) answers 200 ``{success:true, did:{number, description,
carrier, location, is_fallback:false}, metadata}`` with the next DID of `dids` in turn (after
``selection_delay_s``), or what `script_selection` queued, or `selection_reply` for every request:
`Reply.selected(...)`, `Reply.empty_pool(...)` (500 with ``fallback:{number, is_fallback:true}``),
`Reply.malformed()` (a 200 whose body is not JSON), `Reply.slow(2.0)`, `Reply.never_answers()`.

Every request is recorded (`requests`); `deliveries` counts, per uniqueid, the requests answered
with ``success: true`` (the server counts each POST: a count above 1 is a double report).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

CALL_RESULTS_PATH = "/api/v1/call-results"
DIDS_NEXT_PATH = "/api/v1/dids/next"
REQUIRED = ("uniqueid", "phoneNumber", "campaignId")


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``hang`` never answers; ``delay_s`` waits before answering."""

    status: int = 200
    body: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay_s: float = 0.0

    @classmethod
    def success(cls) -> Reply:
        return cls(200, None)

    @classmethod
    def error(cls, status: int = 500, message: str = "Internal server error") -> Reply:
        return cls(status, json.dumps({"success": False, "message": message}))

    @classmethod
    def rate_limited(cls, retry_after: str | None = "1") -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(429, "Too many requests from this IP, please try again later.", "text/plain", headers)

    @classmethod
    def html(cls, status: int = 502) -> Reply:
        page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>"
        return cls(status, page, "text/html")

    @classmethod
    def success_false(cls, message: str = "Campaign not found") -> Reply:
        return cls(200, json.dumps({"success": False, "message": message}))

    @classmethod
    def unauthorized(cls, message: str = "Invalid API key") -> Reply:
        return cls(401, json.dumps({"success": False, "message": message}))

    @classmethod
    def bad_request(cls, error: str = "Missing required fields: uniqueid, phoneNumber, campaignId") -> Reply:
        return cls(400, json.dumps({"success": False, "error": error}))

    @classmethod
    def never_answers(cls) -> Reply:
        return cls(hang=True)

    @classmethod
    def selected(cls, number: str = "+15555550100", *, is_fallback: bool = False, delay_s: float = 0.0) -> Reply:
        did = {"number": number, "description": "pool DID", "carrier": "lab", "location": "NY",
               "is_fallback": is_fallback}  # fmt: skip
        return cls(200, json.dumps({"success": True, "did": did, "metadata": {"algorithm": "round-robin"}}),
                   delay_s=delay_s)  # fmt: skip

    @classmethod
    def empty_pool(cls, fallback: str = "+15555550199") -> Reply:
        return cls(500, json.dumps({"success": False, "message": "No available DIDs",
                                    "fallback": {"number": fallback, "is_fallback": True}}))  # fmt: skip

    @classmethod
    def malformed(cls) -> Reply:
        return cls(200, '{"success": true, "did": {"number": "+1555', "application/json")

    @classmethod
    def slow(cls, delay_s: float = 2.0, number: str = "+15555550100") -> Reply:
        return cls.selected(number, delay_s=delay_s)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int | None
    at: float
    query: dict[str, str] = field(default_factory=dict)


class FakeDIDOptimizer:
    """The fake server. ``async with FakeDIDOptimizer(api_key=...) as fake: fake.base_url``."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.deliveries: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self._script: deque[Reply] = deque()
        self._selection_script: deque[Reply] = deque()
        #: DIDs handed out in turn by ``GET /api/v1/dids/next``; ``selection_reply`` overrides them.
        self.dids: list[str] = ["+15555550100", "+15555550101", "+15555550102"]
        self.selection_reply: Reply | None = None
        self.selection_delay_s = 0.0
        self._next_did = 0
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._record_id = 0
        self.base_url = ""

    def script_selection(self, *replies: Reply) -> None:
        """Answer the next DID selections with ``replies``, in order; then the default again."""
        self._selection_script.extend(replies)

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order; then behave normally again."""
        self._script.extend(replies)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        uniqueid = str(data.get("uniqueid")) if isinstance(data, dict) and "uniqueid" in data else None
        if uniqueid is not None:
            self.received[uniqueid] += 1
        if request.path == DIDS_NEXT_PATH:
            return await self._selection(request, body, arrived)
        reply = self._script.popleft() if self._script else None
        if reply is None:
            reply = self._default_reply(request, data)
        if reply.hang:
            self._record(request, body, data, None, arrived)
            await self._stopping.wait()
            raise web.HTTPServiceUnavailable()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        text = reply.body
        if text is None:
            self._record_id += 1
            text = json.dumps({
                "success": True, "message": "Call result recorded",
                "data": {"recordId": self._record_id, "uniqueid": uniqueid,
                         "disposition": (data or {}).get("disposition") if isinstance(data, dict) else None},
            })
            if uniqueid is not None:
                self.deliveries[uniqueid] += 1
        self._record(request, body, data, reply.status, arrived)
        return web.Response(status=reply.status, text=text, content_type=reply.content_type, headers=reply.headers)

    async def _selection(self, request: web.Request, body: bytes, arrived: float) -> web.StreamResponse:
        reply = self._selection_script.popleft() if self._selection_script else self.selection_reply
        if reply is None:
            unauthorized = self._auth_failure(request)
            if unauthorized is not None:
                reply = unauthorized
            else:
                number = self.dids[self._next_did % len(self.dids)]
                self._next_did += 1
                reply = Reply.selected(number, delay_s=self.selection_delay_s)
        if reply.hang:
            self._record(request, body, None, None, arrived)
            await self._stopping.wait()
            raise web.HTTPServiceUnavailable()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        self._record(request, body, None, reply.status, arrived)
        return web.Response(status=reply.status, text=reply.body, content_type=reply.content_type, headers=reply.headers)

    def _auth_failure(self, request: web.Request) -> Reply | None:
        if self.api_key is None:
            return None
        given = request.headers.get("x-api-key")
        if not given:
            return Reply.unauthorized("API key required")
        return None if given == self.api_key else Reply.unauthorized("Invalid API key")

    def selections(self) -> list[RecordedRequest]:
        """The ``GET /api/v1/dids/next`` requests received, in order."""
        return [r for r in self.requests if r.path == DIDS_NEXT_PATH]

    def _default_reply(self, request: web.Request, data: Any) -> Reply:
        if request.method != "POST" or request.path != CALL_RESULTS_PATH:
            return Reply(404, json.dumps({"success": False, "message": "Not found"}))
        if self.api_key is not None:
            given = request.headers.get("x-api-key")
            if not given:
                return Reply.unauthorized("API key required")
            if given != self.api_key:
                return Reply.unauthorized("Invalid API key")
        if not isinstance(data, dict) or any(not data.get(name) for name in REQUIRED):
            return Reply.bad_request()
        return Reply.success()

    def _record(self, request: web.Request, body: bytes, data: Any, status: int | None, at: float) -> None:
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body, data, status, at,
                            dict(request.query))
        )

    def requests_for(self, uniqueid: str) -> list[RecordedRequest]:
        return [r for r in self.requests if isinstance(r.json, dict) and r.json.get("uniqueid") == uniqueid]
