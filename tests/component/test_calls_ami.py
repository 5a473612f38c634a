"""The call side end to end on loopback: a fake Asterisk replaying recorded AMI traffic -> AMIClient ->
CallService -> the ``/ws/calls`` stream and ``/api/calls/live``; CoreShowChannels answered from the
lab's recorded replies (Asterisk 22.10.1)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from aiohttp import web

from telephonyd.ami import AMIClient
from telephonyd.calls.records import metadata as calls_metadata
from telephonyd.calls.routes import CallStream, routes
from telephonyd.calls.service import CallService
from telephonyd.calls.settings import CallsConfig
from telephonyd.config import AMIConfig
from telephonyd.store import Store
from tests.fakes.ami_channels import IDLE, TWO_CALLS, RecordedChannelsAMI
from tests.helpers import running, wait_until

SECRET = "s3cret"


async def test_calls_over_ami_reach_the_websocket_and_resync_closes_what_ended(sqlite_url: str) -> None:
    store = Store(sqlite_url, schemas=[calls_metadata])
    await store.start()
    async with RecordedChannelsAMI(secret=SECRET) as ami:
        ami.listing = TWO_CALLS
        client = AMIClient(AMIConfig(enabled=True, port=ami.port, secret=SECRET, backoff_base_s=0.05,
                                     backoff_max_s=0.2))
        service = CallService(CallsConfig(enabled=True), ami=client)
        stream = CallStream(service.live_calls, node_id="ast1")
        service.add_listener(stream.publish_event)
        app = web.Application()
        app.add_routes(routes(store, stream, service.live_calls, call_log_target="did_optimizer"))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        try:
            async with running(service), running(client), aiohttp.ClientSession() as http:
                await wait_until(lambda: service.resyncs == 1, what="the first resync")
                # The two calls up in the recorded listing are adopted.
                async with http.get(f"{base}/api/calls/live") as reply:
                    live = (await reply.json())["calls"]
                assert sorted(c["linkedid"] for c in live) == ["1796194650.37", "1796194650.38"]
                assert all(c["state"] == "answered" for c in live)
                async with http.ws_connect(f"{base}/ws/calls") as ws:
                    snapshot = json.loads((await ws.receive()).data)
                    assert snapshot["type"] == "calls:snapshot" and len(snapshot["calls"]) == 2
                    ami.replay("01_ANSWER_ami_events.txt")
                    got: list[dict[str, Any]] = [json.loads((await ws.receive(timeout=5)).data) for _ in range(3)]
                    assert [m["event"] for m in got] == ["call.ringing", "call.answered", "call.ended"]
                    assert {m["type"] for m in got} == {"call:event"}
                    assert [m["seq"] for m in got] == [1, 2, 3]
                    assert got[-1]["call"]["linkedid"] == "1795237838.1"
                    assert got[-1]["call"]["hung_up_by"] == "callee" and got[-1]["node_id"] == "ast1"
                    # Asterisk restarts with nothing up: after the new login, the listing is empty.
                    ami.listing = IDLE
                    ami.drop_connections()
                    ended = [json.loads((await ws.receive(timeout=10)).data) for _ in range(2)]
                    assert sorted(m["call"]["linkedid"] for m in ended) == ["1796194650.37", "1796194650.38"]
                    assert {(m["event"], m["call"]["end_reason"]) for m in ended} == {("call.ended", "resync")}
                assert service.tracker.calls == {}
                assert service.health()["resyncs"] == 2
        finally:
            await stream.close()
            await runner.cleanup()
            await store.close()
