"""The ``call_log`` handler behind the real FastAGI server, against a fake Asterisk on loopback.

Each recorded VICIdial-style call is replayed in its real order (start stage, VICIdial's ``h,1``
HVcauses line, the argument-form ``h,2`` line), every command answered by Asterisk's rules from
the recorded channel state (tests/fakes/agi.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from telephonyd.calllog import CallLogHandler
from telephonyd.config import CallLogConfig, FastAGIConfig
from telephonyd.fastagi import FastAGIServer
from tests.calllog_scenarios import NOW, SCENARIOS, call_log_sessions
from tests.fakes.agi import SessionTranscript, run_session


@dataclass
class Queued:
    id: int
    created: bool


class RecordingEnqueue:
    """Stands in for Outbox.enqueue: records calls; a second (target, key) creates nothing."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, target: str, key: str, payload: dict[str, Any]) -> Queued:
        self.calls.append((target, key))
        created = (target, key) not in self.rows
        if created:
            self.rows[(target, key)] = payload
        return Queued(len(self.rows), created)


@dataclass
class Running:
    host: str
    port: int
    handler: CallLogHandler
    server: FastAGIServer


async def serve(enqueue: Any) -> AsyncIterator[Running]:
    handler = CallLogHandler(CallLogConfig(), enqueue, target="did_optimizer", clock=lambda: NOW)
    server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"]), {"call_log": handler})
    await server.start()
    task = asyncio.create_task(server.run())
    try:
        host, port = server.bound_addresses[0][:2]
        yield Running(host, port, handler, server)
    finally:
        await server.stop(5.0)
        await asyncio.wait_for(task, 5.0)


@pytest.fixture
def enqueue() -> RecordingEnqueue:
    return RecordingEnqueue()


@pytest.fixture
async def running(enqueue: RecordingEnqueue) -> AsyncIterator[Running]:
    async for r in serve(enqueue):
        yield r


async def play(running: Running, scenario: str) -> list[SessionTranscript]:
    return [await run_session(running.host, running.port, ch) for ch in call_log_sessions(scenario)]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_recorded_call(running: Running, enqueue: RecordingEnqueue, scenario: str) -> None:
    payload, results = SCENARIOS[scenario]
    transcripts = await play(running, scenario)
    assert [t.result for t in transcripts] == results
    for t in transcripts:
        assert t.closed_by_server and t.error is None
        # one GET FULL VARIABLE, then the server's SET VARIABLE TELEPHONYD_RESULT
        assert len(t.commands) == 2
        assert t.commands[0].startswith('GET FULL VARIABLE "${')
        assert t.replies[0].startswith("200 result=1 (")
        assert t.commands[1].startswith("SET VARIABLE TELEPHONYD_RESULT ")
    if payload is None:
        assert enqueue.calls == []
    else:
        key = ("did_optimizer", payload["uniqueid"])
        assert enqueue.rows == {key: payload}
        assert enqueue.calls == [key, key]  # both h lines ran; the second created nothing


async def test_caller_hangup_during_start_stage_is_answered(running: Running) -> None:
    start = call_log_sessions("08_CALLER_HANGUP_DURING_START")[0]
    assert start.hangup_before_command is not None  # the recording has the unsolicited HANGUP
    transcript = await run_session(running.host, running.port, start)
    assert transcript.hangup_sent and transcript.closed_by_server
    assert transcript.result == "STARTED"


async def test_all_calls_interleaved_one_outcome_each(running: Running, enqueue: RecordingEnqueue) -> None:
    # Calls overlap in a real system: run every recorded call at once, each in its own order.
    async def call(scenario: str) -> list[str | None]:
        return [t.result for t in await play(running, scenario)]

    results = await asyncio.gather(*(call(s) for s in sorted(SCENARIOS)))
    assert results == [SCENARIOS[s][1] for s in sorted(SCENARIOS)]
    assert enqueue.rows == {
        ("did_optimizer", p["uniqueid"]): p for p, _ in SCENARIOS.values() if p is not None
    }


async def test_store_down_sets_error_for_the_dialplan() -> None:
    async def down(target: str, key: str, payload: dict[str, Any]) -> Queued:
        raise OSError("database is locked")

    async for r in serve(down):
        start, h1, h2 = call_log_sessions("02_BUSY")
        transcripts = [await run_session(r.host, r.port, ch) for ch in (start, h1, h2)]
        assert [t.result for t in transcripts] == ["STARTED", "ERROR", "ERROR"]
        assert all(t.closed_by_server for t in transcripts)
