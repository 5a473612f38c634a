"""The web console: a wallboard of agents, calls in progress, the outbox and health, served by the
daemon at ``GET /`` when ``http.console`` is true. Static HTML/CSS/JS in ``static/`` (package data,
no CDN, no build step), live over ``/ws/agents`` and ``/ws/calls``; login exchanges the admin token
for a session cookie (`sessions`); routes in `routes`."""

from .sessions import ConsoleSessions

__all__ = ["ConsoleSessions"]
