"""A burst of simultaneous AGI() calls: every one is served and closed (throughput lives in bench/)."""

from __future__ import annotations

import asyncio

from telephonyd.config import FastAGIConfig
from telephonyd.fastagi import AGISession, FastAGIServer
from tests.fakes.agi import FakeChannel, run_session

async def _end_stage(session: AGISession) -> str:
    await session.get_variable("DIALSTATUS")
    await session.get_variable("HANGUPCAUSE")
    await session.get_variable("ANSWEREDTIME")
    await session.get_full_variable("${CHANNEL(linkedid)}")
    return "OK"  # plus SET VARIABLE TELEPHONYD_RESULT: 5 commands


async def test_burst_of_simultaneous_calls_all_complete():
    async def handler(session: AGISession) -> str:
        return (await session.get_variable("UNIQUEID")) or "NONE"

    server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"]), {"call_log": handler})
    await server.start()
    host, port = server.bound_addresses[0]
    try:
        channels = [FakeChannel.synthetic(uniqueid=f"1700000000.{i}") for i in range(300)]
        transcripts = await asyncio.gather(*(run_session(host, port, ch) for ch in channels))
    finally:
        await server.stop(1.0)
    assert [t.result for t in transcripts] == [f"1700000000.{i}" for i in range(300)]
    assert all(t.closed_by_server for t in transcripts)
