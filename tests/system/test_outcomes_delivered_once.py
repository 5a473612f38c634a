"""The daemon as a process: FastAGI hangup sessions in, SIGTERM mid-load, restart, kill -9:
every outcome whose AGI session was answered QUEUED reaches the DID Optimizer exactly once."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply

pytestmark = pytest.mark.system

API_KEY = "did_" + "5" * 64


def hangup_channel(i: int, status: str = "BUSY", cause: str = "17") -> FakeChannel:
    uniqueid = f"1795300000.{i}"
    return FakeChannel.synthetic(
        {
            "DIALSTATUS": status, "HANGUPCAUSE": cause, "DIALEDTIME": "", "ANSWEREDTIME": "",
            "campaign_id": "TESTCAMP", "agent": "6001", "OPTIMIZER_DID": "15551230001", "lead_id": str(1000 + i),
        },
        args=[status, cause], uniqueid=uniqueid, extension="h", priority="2",
        channel=f"PJSIP/1010-{i:08x}", name=f"sys-{i}",
    )


async def play(
    port: int, channels: list[FakeChannel], concurrency: int = 16, results: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    """Run every channel's hangup session; returns uniqueid -> TELEPHONYD_RESULT (None: no answer),
    filling ``results`` (when given) as sessions end."""
    results = {} if results is None else results
    queue: asyncio.Queue[FakeChannel] = asyncio.Queue()
    for chan in channels:
        queue.put_nowait(chan)

    async def worker() -> None:
        while not queue.empty():
            chan = queue.get_nowait()
            uid = chan.env["uniqueid"]
            try:
                transcript = await run_session("127.0.0.1", port, chan, timeout=10)
                results[uid] = transcript.result
            except OSError:
                results[uid] = None  # listener closed: Asterisk would set AGISTATUS=FAILURE

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def queued(results: dict[str, str | None]) -> set[str]:
    return {uid for uid, result in results.items() if result == "QUEUED"}


async def settled(daemon, expected: int) -> None:
    """Wait until the outbox holds nothing pending or in flight and `expected` rows are delivered."""

    def done(status: dict) -> bool:
        by_state = status["outbox"].get("by_state", {})
        return by_state.get("pending") == 0 and by_state.get("in_flight") == 0 and by_state.get("delivered") == expected

    await daemon.wait_status(done, timeout=60)


async def test_sigterm_mid_load_then_restart_delivers_every_queued_outcome_once(daemon_factory) -> None:
    async with FakeDIDOptimizer(api_key=API_KEY) as fake:
        config = {"did_optimizer": {"enabled": True, "base_url": fake.base_url, "api_key": API_KEY}}
        daemon = daemon_factory(config)
        daemon.start()
        channels = [hangup_channel(i) for i in range(400)]

        ended: dict[str, str | None] = {}
        load = asyncio.create_task(play(daemon.agi_port, channels, results=ended))
        # Mid-load: deliveries are flowing, or a quarter of the calls ended (a fast daemon answers
        # them all before 50 deliveries), and most calls are still to come.
        while sum(fake.deliveries.values()) < 50 and len(ended) < len(channels) // 4:
            await asyncio.sleep(0.01)
        daemon.signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.stop, 30)
        first = await load
        assert code == 0, daemon.logs()[-3000:]
        notes = "\n".join(daemon.drain_notifications())
        assert "READY=1" in notes and "STOPPING=1" in notes

        answered = queued(first)
        refused = [c for c in channels if first[c.env["uniqueid"]] is None]
        assert answered and refused, "SIGTERM should land mid-load"
        assert set(first.values()) <= {"QUEUED", None}  # a session is answered in full or refused, never cut

        daemon.start()
        second = await play(daemon.agi_port, refused)
        answered |= queued(second)
        assert answered == {c.env["uniqueid"] for c in channels}
        await settled(daemon, expected=len(channels))
        assert daemon.stop() == 0

    assert set(fake.deliveries) == answered
    assert all(count == 1 for count in fake.deliveries.values()), fake.deliveries.most_common(3)
    sample = fake.requests_for("1795300000.7")[0]
    assert sample.headers.get("x-api-key") == API_KEY
    assert sample.json["dialStatus"] == "BUSY" and sample.json["hangupCause"] == 17
    assert sample.json["campaignId"] == "TESTCAMP" and sample.json["leadId"] == "1007"
    assert API_KEY not in daemon.logs()


async def test_kill9_during_upstream_outage_loses_nothing(daemon_factory) -> None:
    async with FakeDIDOptimizer() as fake:
        fake.script(*[Reply.error(503)] * 40)  # the API is down for the first stretch
        daemon = daemon_factory({"did_optimizer": {"enabled": True, "base_url": fake.base_url},
                                 "outbox": {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "lease_s": 2.0}})
        daemon.start()
        channels = [hangup_channel(i, "NOANSWER", "16") for i in range(200)]
        load = asyncio.create_task(play(daemon.agi_port, channels))
        while len(fake.requests) < 60:  # the outage has been hit and sessions keep coming
            await asyncio.sleep(0.01)
        daemon.kill()  # SIGKILL: no drain, claims left in flight
        first = await load
        answered = queued(first)
        assert answered, "some sessions were answered before the kill"

        daemon.start()
        rest = [c for c in channels if c.env["uniqueid"] not in answered]
        second = await play(daemon.agi_port, rest)
        answered |= queued(second)
        assert answered == {c.env["uniqueid"] for c in channels}
        await settled(daemon, expected=len(channels))
        assert daemon.stop() == 0

    assert set(fake.deliveries) == answered
    # A row whose send was confirmed upstream but whose "delivered" commit died with the process can
    # be sent again (at least once); at most the sends in flight at the kill (outbox.concurrency).
    assert sum(count - 1 for count in fake.deliveries.values()) <= 8


async def test_upstream_outage_then_back_delivers_every_outcome_exactly_once(daemon_factory) -> None:
    async with FakeDIDOptimizer() as fake:
        # Down for a stretch: 5xx, an HTML error page, a 429 with Retry-After, more 5xx; then back.
        fake.script(*[Reply.error(503)] * 30, Reply.html(502), Reply.rate_limited("1"), *[Reply.error(500)] * 30)
        daemon = daemon_factory({"did_optimizer": {"enabled": True, "base_url": fake.base_url},
                                 "outbox": {"backoff_base_s": 0.05, "backoff_max_s": 0.3}})
        daemon.start()
        channels = [hangup_channel(i, "CONGESTION", "34") for i in range(300)]
        results = await play(daemon.agi_port, channels)
        assert queued(results) == {c.env["uniqueid"] for c in channels}
        await settled(daemon, expected=len(channels))
        assert daemon.stop() == 0

    failed = [r for r in fake.requests if r.status != 200]
    assert len(failed) >= 62  # the outage was really hit
    assert set(fake.deliveries) == queued(results)
    assert all(count == 1 for count in fake.deliveries.values())
