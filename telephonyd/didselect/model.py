"""`Selection`: what one ``did_select`` session decided (a value; the store row and the report's fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Selection:
    """One decision. ``did``: the DID set as caller id (digits), None when the caller id was left
    alone; ``status``: ``OPTIMIZER_STATUS``; ``result``: the route's word; ``latency_ms``: from the
    session's start to the decision; ``created_at``: epoch seconds."""

    uniqueid: str
    request_id: str
    result: str
    status: str
    did: str | None
    fallback: bool
    reason: str | None
    detail: str
    latency_ms: float
    campaign: str
    area_code: str
    created_at: float
    node_id: str = ""

    def row(self) -> dict[str, Any]:
        """The ``did_selection`` row."""
        return {
            "uniqueid": self.uniqueid[:64],
            "request_id": self.request_id[:64],
            "result": self.result,
            "status": self.status,
            "did": self.did,
            "fallback": self.fallback,
            "reason": self.reason,
            "detail": self.detail[:1000] or None,
            "latency_ms": round(self.latency_ms, 3),
            "campaign": self.campaign[:64],
            "area_code": self.area_code[:8],
            "node_id": self.node_id[:64],
            "created_at": self.created_at,
        }

    @classmethod
    def from_row(cls, row: Any) -> Selection:
        m = row._mapping if hasattr(row, "_mapping") else row
        return cls(
            uniqueid=m["uniqueid"], request_id=m["request_id"], result=m["result"], status=m["status"],
            did=m["did"], fallback=bool(m["fallback"]), reason=m["reason"], detail=m["detail"] or "",
            latency_ms=float(m["latency_ms"]), campaign=m["campaign"], area_code=m["area_code"],
            created_at=float(m["created_at"]), node_id=m["node_id"],
        )  # fmt: skip
