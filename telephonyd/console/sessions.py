"""`ConsoleSessions`: the web console's logins (in memory; a restart logs everyone out).

``POST /console/login`` with the admin token (in the JSON body, never in a URL) creates a session:
a random id in the ``telephonyd_session`` cookie (HttpOnly, SameSite=Strict, Path=/, Secure over
HTTPS) and a per-session CSRF token the page keeps in memory. `accepts` is the HTTP server's
``session_auth`` hook: a request with a live session's cookie is admitted to admin routes when
it is a safe method (GET/HEAD, WebSocket upgrades included) whose ``Origin`` (if sent) is this
host, or an unsafe one that also carries ``X-CSRF-Token`` equal to its session's token. Sessions
end at ``http.console_session_ttl_s``, on logout, or when the admin token changes (reload).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "telephonyd_session"
CSRF_HEADER = "X-CSRF-Token"
#: Sessions kept at once; the oldest is forgotten beyond this.
MAX_SESSIONS = 1000
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(slots=True)
class Session:
    csrf: str
    expires_at: float
    token_digest: bytes


class ConsoleSessions:
    """Logins of the console. ``admin_token()`` returns the current admin token; with none
    configured a login succeeds only for a request ``tokenless(request)`` admits (the HTTP server's
    `authorized`: a client on this host), whatever token it presents. ``clock`` is monotonic seconds."""

    def __init__(self, admin_token: Callable[[], str | None], ttl_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 tokenless: Callable[[web.Request], bool] = lambda _request: False) -> None:
        self._admin_token = admin_token
        self._tokenless = tokenless
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def local_only(self, request: web.Request) -> bool:
        """True when no admin token is configured and ``request`` comes from elsewhere: no token it
        presents can log it in (the answer tells it to set ``http.admin_token``)."""
        return self._admin_token() is None and not self._tokenless(request)

    def login(self, presented: str, request: web.Request) -> tuple[str, str] | None:
        """A new (session id, CSRF token) when ``presented`` is the admin token (with none
        configured: when ``request`` comes from a client ``tokenless`` admits), else None."""
        token = self._admin_token()
        if token is None:
            if not self._tokenless(request):
                return None
        elif not hmac.compare_digest(presented.encode(), token.encode()):
            return None
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self._sessions[session_id] = Session(csrf, self._clock() + self.ttl_s, self._digest())
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id, csrf

    def logout(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def session(self, request: web.Request) -> Session | None:
        """The live session of ``request``'s cookie, or None (expired ones are forgotten)."""
        session_id = request.cookies.get(COOKIE)
        found = self._sessions.get(session_id) if session_id else None
        if found is None:
            return None
        if found.expires_at <= self._clock() or not hmac.compare_digest(found.token_digest, self._digest()):
            self._sessions.pop(session_id, None)  # type: ignore[arg-type]
            return None
        return found

    def accepts(self, request: web.Request) -> bool:
        """The ``session_auth`` hook (see the module docstring)."""
        found = self.session(request)
        if found is None:
            return False
        if request.method in _SAFE:
            return same_origin(request)
        presented = request.headers.get(CSRF_HEADER, "")
        return bool(presented) and hmac.compare_digest(presented.encode(), found.csrf.encode()) and same_origin(request)

    def _digest(self) -> bytes:
        import hashlib

        return hashlib.sha256((self._admin_token() or "").encode()).digest()


def same_origin(request: web.Request) -> bool:
    """True without an ``Origin`` header, or when its host:port is the request's ``Host``."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def set_cookie(response: web.StreamResponse, request: web.Request, session_id: str, ttl_s: float) -> None:
    response.set_cookie(COOKIE, session_id, max_age=int(ttl_s), path="/", httponly=True, samesite="Strict",
                        secure=request.secure)
