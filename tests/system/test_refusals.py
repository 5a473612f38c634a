"""What the daemon, as a process, logs and counts for input it refuses:

- a uniqueid longer than the store's key column: one refusal line, ``ERROR`` for the dialplan, no
  traceback (and the longest accepted uniqueid is recorded);
- thousands of wrong-token requests, unknown scripts, idle FastAGI connections, refused clients and
  wrong-token callbacks: a few log lines with the counts held back, every event in ``/metrics``;
- Ameyo callbacks open to any client: a start-up warning, a ``/status`` flag and a gauge; none of it
  once a token is set.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.helpers import wait_until

from .daemon import Daemon
from .floods import HALF_AGI_BLOCK, Flood, metric
from .test_faults import hangup_channel

pytestmark = pytest.mark.system

OPEN_WARNING = "Ameyo callbacks are open to any client"


async def test_overlong_uniqueid_is_refused_with_one_line_and_no_traceback(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory()
    daemon.start()
    longest = hangup_channel(0, base="1" * 189)  # "111...1.0": 191 characters
    assert len(longest.env["uniqueid"]) == 191
    too_long = hangup_channel(1, base="9" * 300)
    accepted = await run_session("127.0.0.1", daemon.agi_port, longest, timeout=10)
    refused = await run_session("127.0.0.1", daemon.agi_port, too_long, timeout=10)
    assert (accepted.result, refused.result) == ("QUEUED", "ERROR")
    records = daemon.log_records()
    lines = [r for r in records if r["msg"].startswith("call_log refused: uniqueid too long")]
    assert len(lines) == 1 and lines[0]["uniqueid_chars"] == 302
    assert not [r for r in records if "exc" in r or r["level"] == "error"], "no traceback, no error"
    assert daemon.stop() == 0


async def test_repeated_refusals_are_logged_with_counts_and_all_counted_in_metrics(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory({
        "fastagi": {"block_timeout_s": 1, "allowed_clients": ["127.0.0.1/32"]},
        "ameyo": {"token": "callback-token-1234"},
    })
    daemon.start()
    url = daemon.base_url
    wrong_token, callbacks, unknown, idle, refused = 2000, 300, 200, 200, 100

    async def hammer(session: aiohttp.ClientSession, path: str, headers: dict[str, str], count: int) -> Counter:
        statuses: Counter = Counter()
        for _ in range(count):
            async with session.get(url + path, headers=headers) as resp:
                statuses[resp.status] += 1
        return statuses

    async def unknown_script(i: int) -> str | None:
        chan = FakeChannel.synthetic(script="no_such_script", uniqueid=f"1795800000.{i}")
        return (await run_session("127.0.0.1", daemon.agi_port, chan, timeout=10)).result

    async def from_other_address() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", daemon.agi_port, local_addr=("127.0.0.2", 0))
        writer.close()

    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with Flood("127.0.0.1", daemon.agi_port, idle, HALF_AGI_BLOCK, reopen=False) as flood:
            statuses = await asyncio.gather(
                *[hammer(http, "/status", {"Authorization": "Bearer wrong"}, wrong_token // 8) for _ in range(8)],
                *[hammer(http, "/ameyo/call-end?token=wrong", {}, callbacks // 4) for _ in range(4)],
            )
            results = [await unknown_script(i) for i in range(unknown)]
            for _ in range(refused):
                await from_other_address()
            await wait_until(lambda: flood.stats.closed_by_server == idle, timeout=15, what="idle sessions timed out")
    assert sum(statuses, Counter()) == Counter({401: wrong_token + callbacks})
    assert results == ["UNKNOWN_SCRIPT"] * unknown

    async def counted() -> bool:
        code, text = await daemon.get("/metrics")
        return code == 200 and metric(text, "telephonyd_agi_connections_refused_total", reason="address") == refused
    await wait_until(counted, timeout=10, what="every refused client counted")
    _, text = await daemon.get("/metrics")
    assert metric(text, "telephonyd_http_auth_refused_total", area="admin") == wrong_token
    assert metric(text, "telephonyd_ameyo_callbacks_total", result="unauthorized") == callbacks
    assert metric(text, "telephonyd_agi_sessions_total", script="unknown", result="UNKNOWN_SCRIPT") == unknown
    assert metric(text, "telephonyd_agi_sessions_total", script="-", result="BLOCK_TIMEOUT") == idle

    messages = Counter(r["msg"] for r in daemon.log_records())
    for message in ("admin request refused", "callback refused", "FastAGI unknown script",
                    "FastAGI client sent no complete agi_ block in time",
                    "FastAGI connection refused: client address not allowed"):
        assert 1 <= messages[message] <= 4, (message, messages[message])
    shown = [r for r in daemon.log_records() if r["msg"] == "admin request refused"]
    assert all("suppressed" in r and "repeat_interval_s" in r for r in shown)
    assert daemon.stop() == 0


@pytest.mark.parametrize("token", [None, "callback-token-1234"])
async def test_open_callbacks_are_flagged_at_start_in_status_and_metrics(
    daemon_factory: Callable[..., Daemon], token: str | None,
) -> None:
    daemon = daemon_factory({"ameyo": {"token": token}})
    daemon.start()
    status = await daemon.wait_status(lambda s: "ameyo" in s["components"])
    warnings = [r for r in daemon.log_records() if r["msg"].startswith(OPEN_WARNING)]
    _, text = await daemon.get("/metrics")
    if token is None:
        assert status["components"]["ameyo"]["open_to_any_client"] is True
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"
        assert metric(text, "telephonyd_ameyo_open_to_any_client") == 1
    else:
        assert status["components"]["ameyo"]["open_to_any_client"] is False
        assert warnings == []
        assert metric(text, "telephonyd_ameyo_open_to_any_client") == 0
    assert daemon.stop() == 0
