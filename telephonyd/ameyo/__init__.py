"""Ameyo dialer callbacks relayed to TopS.II: routing (pure), dedupe gate, phone-1 state, request log.

`AmeyoService` answers the callbacks on the HTTP listener; the TopS.II requests leave through the
outbox (target ``tops``, sender `telephonyd.upstream.tops.TopsSender`).
"""

from .service import AmeyoService

__all__ = ["AmeyoService"]
