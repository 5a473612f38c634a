"""The daemon's sd_notify sequence over a real NOTIFY_SOCKET: READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.system


async def test_ready_watchdog_stopping_sequence(daemon_factory) -> None:
    daemon = daemon_factory({}, env={"WATCHDOG_USEC": "200000"})  # ping every 0.1 s
    daemon.start()
    since = len(daemon.drain_notifications())
    for _ in range(100):  # at least three watchdog pings after READY (bounded wait, ~2 s at most)
        pings = sum(m == "WATCHDOG=1" for m in daemon.drain_notifications()[since:])
        if pings >= 3:
            break
        await asyncio.sleep(0.02)
    assert daemon.stop() == 0
    messages = daemon.drain_notifications()
    kinds = [m.split("\n")[0].split("=")[0] for m in messages]
    ready = kinds.index("READY")
    stopping = kinds.index("STOPPING")
    assert ready < stopping
    assert kinds[:ready] and set(kinds[:ready]) == {"STATUS"}  # progress reported while starting
    pings = [i for i, k in enumerate(kinds) if k == "WATCHDOG"]
    assert len(pings) >= 3 and all(ready < i < stopping for i in pings)
    assert "MAINPID=" in messages[ready]


async def test_no_watchdog_pings_without_watchdog_usec(daemon_factory) -> None:
    daemon = daemon_factory({})
    daemon.start()
    assert daemon.stop() == 0
    kinds = [m.split("\n")[0].split("=")[0] for m in daemon.drain_notifications()]
    assert "WATCHDOG" not in kinds and "READY" in kinds and "STOPPING" in kinds
