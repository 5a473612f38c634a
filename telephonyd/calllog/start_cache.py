"""The start-stage cache: uniqueid -> `StartRecord`, in memory, with a time to live.

The start stage runs on every outbound call and the end stage of the same call usually comes
back to the same process; a miss (another node, a restart, an expired entry) only loses what the
end stage can rebuild from the channel and the ``agi_*`` block, so memory is the right store.
Entries expire ``ttl_s`` after they were written; when full, the oldest entry is dropped
(`telephonyd.ttlmap.TTLMap`).
"""

from __future__ import annotations

from ..ttlmap import TTLMap
from .outcome import StartRecord


class StartCache(TTLMap[str, StartRecord]):
    """``put(uniqueid, record)``, ``get(uniqueid)``, ``discard(uniqueid)``; ``evicted``/``expired`` counts."""
