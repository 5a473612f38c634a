"""kill -9 while POSTs are in flight, then a restart: the new process takes back its predecessor's
claims at once (not after the 60 s+ lease), names every row it sends again in the log, and every
send carries the same ``Idempotency-Key: <target>:<key>``; a live twin with the same node_id on one
MariaDB is never taken from."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.helpers import wait_until

from .daemon import Daemon

pytestmark = pytest.mark.system

TAKEN_BACK = "outbox claim of this node's previous process (gone) taken back; the row will be sent again"
LEASE_S = 600.0  # far longer than any wait below: only the take-back can bring the rows back in time


def hangup(i: int) -> FakeChannel:
    return FakeChannel.synthetic(
        {"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "campaign_id": "CLAIMS", "agent": "6001",
         "OPTIMIZER_DID": "15551230001", "lead_id": str(9000 + i)},
        args=["ANSWER", "16"], uniqueid=f"1795700000.{i}", extension="h", priority="2",
        channel=f"PJSIP/1010-{i:08x}", name=f"claims-{i}",
    )


def daemon_config(fake: FakeDIDOptimizer, **extra: dict) -> dict:
    return {"did_optimizer": {"enabled": True, "base_url": fake.base_url, "timeout_s": LEASE_S / 2},
            "outbox": {"lease_s": LEASE_S, "poll_interval_s": 0.2}, **extra}


async def six_in_flight(daemon: Daemon, fake: FakeDIDOptimizer) -> list[str]:
    fake.script(*[Reply.never_answers()] * 6)
    uniqueids = []
    for i in range(6):
        transcript = await run_session("127.0.0.1", daemon.agi_port, hangup(i), timeout=15)
        assert transcript.result == "QUEUED"
        uniqueids.append(f"1795700000.{i}")
    await wait_until(lambda: len(fake.requests) == 6, timeout=30, what="six POSTs in flight")
    return uniqueids


async def test_restart_after_kill_takes_back_its_claims_at_once(tmp_path: Path) -> None:
    async with FakeDIDOptimizer() as fake:
        daemon = Daemon(tmp_path / "d", daemon_config(fake))
        try:
            await asyncio.to_thread(daemon.start)
            uniqueids = await six_in_flight(daemon, fake)
            daemon.kill()  # SIGKILL: no release, the six claims stay in the store
            await asyncio.to_thread(daemon.start)
            await wait_until(lambda: sum(fake.deliveries.values()) == 6, timeout=60,
                             what=f"the six rows delivered well within their {LEASE_S:g} s lease")
            taken = [r for r in daemon.log_records() if r.get("msg") == TAKEN_BACK]
            assert sorted(r["uniqueid"] for r in taken) == uniqueids
            assert all(r.get("outbox_id") and r.get("key") and r.get("claimed_by") == "sys1" for r in taken)
            for uid in uniqueids:
                sent = fake.requests_for(uid)
                assert len(sent) == 2  # the lost attempt and the re-send
                keys = {r.headers.get("Idempotency-Key") for r in sent}
                row_key = next(r["key"] for r in taken if r["uniqueid"] == uid)
                assert keys == {f"did_optimizer:{row_key}"}
                assert all(r.json["uniqueid"] == uid for r in sent)
            assert daemon.stop() == 0
        finally:
            daemon.close()


async def test_live_twin_with_the_same_node_id_is_never_taken_from(tmp_path: Path, mariadb_url: str) -> None:
    async with FakeDIDOptimizer() as fake:
        first = Daemon(tmp_path / "a", daemon_config(fake, store={"url": mariadb_url}))
        twin = Daemon(tmp_path / "b", daemon_config(fake, store={"url": mariadb_url}))
        try:
            await asyncio.to_thread(first.start)
            await six_in_flight(first, fake)
            await asyncio.to_thread(twin.start)

            async def twin_counted() -> bool:
                status = (await twin.get("/status"))[1]
                return status["components"]["outbox"]["counts"]["in_flight"] == 6

            # Its counts are refreshed after its take-back step: that step has run.
            await wait_until(twin_counted, timeout=30, what="the twin's first outbox round")
            assert not [r for r in twin.log_records() if r.get("msg") == TAKEN_BACK]
            assert len(fake.requests) == 6 and sum(fake.deliveries.values()) == 0
        finally:
            for daemon in (twin, first):
                daemon.kill()
                daemon.close()
