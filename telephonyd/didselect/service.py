"""`DIDSelectService`: the ``did_select`` feature as one component.

It brings the FastAGI route (`handler`), the lookup the hangup's ``call_log`` uses to put the
selection in the outcome report (`selection_for`), the Prometheus collector (`metrics`) and a
``/status`` entry (`health`, with the circuit breaker). ``run()`` writes selections to the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..store import Store
from .breaker import OPEN, STATE_VALUES, CircuitBreaker
from .client import DIDSelectClient
from .handler import DIDSelectHandler
from ..ttlmap import TTLMap
from .metrics import DIDSelectMetrics
from .model import Selection
from .recorder import SelectionRecorder

if TYPE_CHECKING:
    from ..config import DIDOptimizerConfig, DIDSelectConfig

#: Entries of the reuse cache (campaign x area code) at most.
REUSE_MAX = 10_000


class DIDSelectService:
    """Component (``start``/``run``/``stop``/``health``) around the ``did_select`` route.

    ``config``: the ``did_select`` section; ``api``: the ``did_optimizer`` section (base URL, key);
    ``store``: where selections are recorded (``did_selection``, see `schema`).
    """

    def __init__(
        self,
        config: DIDSelectConfig,
        api: DIDOptimizerConfig,
        store: Store,
        *,
        node_id: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
        self.client = DIDSelectClient(api, config)
        self.metrics = DIDSelectMetrics(
            breaker_state=lambda: STATE_VALUES[self.breaker.state],
            breaker_opened=lambda: self.breaker.opened_total,
        )
        self.recent: TTLMap[str, Selection] = TTLMap(ttl_s=config.remember_ttl_s, max_entries=config.remember_max)
        reuse = TTLMap[tuple[str, str], str](ttl_s=config.reuse_ttl_s, max_entries=REUSE_MAX) if config.reuse_ttl_s > 0 else None
        self.recorder = SelectionRecorder(store, timeout_s=config.record_timeout_s, retention_s=config.retention_s, clock=clock)
        self.handler = DIDSelectHandler(
            config, self.client, self.breaker, self.metrics, self._remember, reuse=reuse, node_id=node_id, clock=clock
        )
        self._stopping = asyncio.Event()
        self._state = "created"

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()
        self._state = "running"

    async def run(self) -> None:
        await self.recorder.run(self._stopping)

    async def stop(self, timeout: float) -> None:
        """Write what is queued (within ``timeout`` s), then close the API connections."""
        self._stopping.set()
        await self.recorder.flushed(timeout)
        await self.client.close()
        self._state = "stopped"

    def health(self) -> dict[str, Any]:
        """``ok`` is false while the breaker is open (the API is failing; calls still go out)."""
        return {
            "ok": self.breaker.state != OPEN,
            "state": self._state,
            "enabled": self.config.enabled,
            "breaker_state": self.breaker.state,  # flat, for `telephonyd status`
            "breaker": self.breaker.snapshot(),
            "remembered": len(self.recent),
            "recorder": self.recorder.health(),
        }

    def reconfigure(self, config: Any) -> None:
        """Apply a reloaded `Config` (SIGHUP): the API's URL and key, ``did_select`` budget, enabled,
        fallbacks, variable names, breaker thresholds, record timeout and retention change live;
        ``max_connections``, ``reuse_ttl_s`` and ``remember_*`` need a restart (see reload.py)."""
        new = config.did_select
        self.config = new
        self.client.apply(config.did_optimizer, new)
        self.handler.apply(new)
        self.breaker.failures, self.breaker.cooldown_s = new.breaker_failures, new.breaker_cooldown_s
        self.recorder.timeout_s, self.recorder.retention_s = new.record_timeout_s, new.retention_s

    # -- for call_log ----------------------------------------------------------------------------

    async def selection_for(self, uniqueid: str) -> Selection | None:
        """The selection of ``uniqueid``: from memory, else (only while ``did_select.enabled``, so a
        daemon not selecting DIDs adds no store read to the hangup) from the store: another instance
        or a restart; None when there was none or the store did not answer within ``record_timeout_s``."""
        selection = self.recent.get(uniqueid)
        if selection is not None or not self.config.enabled:
            return selection
        return await self.recorder.lookup(uniqueid)

    def _remember(self, selection: Selection) -> None:
        self.recent.put(selection.uniqueid, selection)
        self.recorder.add(selection)
