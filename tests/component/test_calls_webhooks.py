"""Call events through the outbox to a webhook receiver on loopback: down, then 500, then 200.

The events come from the call tracker fed with recorded Asterisk 22.10.1 AMI streams; rows are
written by the `CallSink`, delivered by the outbox dispatcher through `WebhookSender`.
"""

from __future__ import annotations

import json
import random
from typing import Any

from aiohttp import web

from telephonyd.ami.message import AMIMessage
from telephonyd.calls import CallTracker
from telephonyd.calls.records import call_records, list_records, show_record
from telephonyd.calls.records import metadata as calls_metadata
from telephonyd.calls.settings import CallsConfig
from telephonyd.calls.sink import CallSink
from telephonyd.calls.webhooks import SIGNATURE_HEADER, WebhookSender, verify_signature
from telephonyd.outbox import Outbox, metadata
from telephonyd.store import Store
from tests.fakes.ami_wire import recorded_events
from tests.helpers import running, wait_until
from tests.outbox_harness import fast_config
from tests.helpers import free_port

SECRET = "whsec-test-0123456789"
STREAMS = ["01_ANSWER_ami_events.txt", "02_BUSY_ami_events.txt", "07_AMD_SILENCE_ami_events.txt"]


class Receiver:
    """A webhook receiver: answers ``status`` (500 first, then 200); keeps every request."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 500
        self.fail_once: set[str] = set()  # event ids answered 500 on their first request
        self.requests: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.status
        event_id = json.loads(body)["event_id"]
        if event_id in self.fail_once:
            self.fail_once.discard(event_id)
            status = 500
        self.requests.append({"status": status, "body": body, "headers": dict(request.headers)})
        return web.Response(status=status, text="ok" if status == 200 else "boom")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["status"] == 200]


def tracked_events() -> list[Any]:
    tracker = CallTracker()
    events = []
    now = 1_800_000_000.0
    # Interleave the calls' events as they would arrive from one Asterisk.
    streams = [[AMIMessage(p) for p in recorded_events(name)] for name in STREAMS]
    rng = random.Random(7)
    while any(streams):
        stream = rng.choice([s for s in streams if s])
        now += 0.1
        events += tracker.feed(stream.pop(0), now)
    return events


async def test_receiver_down_then_500_then_200_gets_every_event_once_in_order(store_url: str, http_session) -> None:
    port = free_port()
    config = CallsConfig.model_validate({"enabled": True, "webhooks": [
        {"name": "crm", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET, "timeout_s": 2}]})
    store = Store(store_url, schemas=[metadata, calls_metadata])
    await store.start()
    outbox = Outbox(store, node_id="n1", config=fast_config(concurrency=8), rng=random.Random(1))
    webhook = config.webhooks[0]
    outbox.register_sender(webhook.target, WebhookSender(webhook, http_session, store), enabled=True)
    sink = CallSink(config, store=store, outbox=outbox, node_id="n1")
    receiver = Receiver(port)
    events = tracked_events()
    try:
        async with running(outbox, 5.0), running(sink, 5.0):
            for event in events:
                sink.push(event)
            await wait_until(lambda: sink.written == len(events), what="events stored")
            # Down: nothing listens; rows fail and back off.
            await wait_until(lambda: outbox.health()["sent"].get("retry", 0) >= 3, what="failures while down")
            await receiver.start()
            await wait_until(lambda: len(receiver.requests) >= 2, what="500 answers")
            receiver.status = 200
            await wait_until(lambda: len({json.loads(r["body"])["event_id"] for r in receiver.accepted()})
                             == len(events), timeout=30, what="every event accepted")
            await outbox.refresh_counts()
            await wait_until(lambda: outbox.health()["counts"]["pending"] == 0, timeout=10, what="nothing pending")
        accepted = receiver.accepted()
        ids = [json.loads(r["body"])["event_id"] for r in accepted]
        assert sorted(ids) == sorted(e.event_id for e in events)
        assert len(ids) == len(set(ids)), "an event was accepted twice"
        # In order per call: each call's accepted events follow its seq.
        by_call: dict[str, list[int]] = {}
        for r in accepted:
            doc = json.loads(r["body"])
            by_call.setdefault(doc["call"]["linkedid"], []).append(doc["seq"])
        assert all(seqs == sorted(seqs) for seqs in by_call.values()), by_call
        assert set(by_call) == {"1795237838.1", "1795237857.3", "1795237912.13"}
        for r in receiver.requests:
            headers = r["headers"]
            assert verify_signature(SECRET, headers[SIGNATURE_HEADER], r["body"])
            assert not verify_signature("wrong-secret", headers[SIGNATURE_HEADER], r["body"])
            assert not verify_signature(SECRET, headers[SIGNATURE_HEADER], r["body"] + b" ")
            assert headers["Idempotency-Key"] == json.loads(r["body"])["event_id"]
            assert headers["X-Telephonyd-Event"] == json.loads(r["body"])["event"]
        # One call record per finished call, queryable by linkedid and by a leg's uniqueid.
        records = await list_records(store, since=0)
        assert {r["linkedid"] for r in records} == set(by_call)
        shown = await show_record(store, "1795237839.2")  # the callee leg of the answered call
        assert shown is not None and shown["linkedid"] == "1795237838.1"
        assert shown["record"]["dial_status"] == "ANSWER" and shown["call_log"] is None
    finally:
        await receiver.stop()
        await store.close()


async def test_a_failed_event_holds_back_the_later_events_of_its_call(store_url: str, http_session) -> None:
    port = free_port()
    config = CallsConfig.model_validate({"enabled": True, "webhooks": [
        {"name": "crm", "url": f"http://127.0.0.1:{port}/hook", "events": ["call.ringing", "call.answered",
                                                                           "call.ended"]}]})
    store = Store(store_url, schemas=[metadata, calls_metadata])
    await store.start()
    outbox = Outbox(store, node_id="n1", config=fast_config(concurrency=8), rng=random.Random(1))
    webhook = config.webhooks[0]
    outbox.register_sender(webhook.target, WebhookSender(webhook, http_session, store), enabled=True)
    sink = CallSink(config, store=store, outbox=outbox, node_id="n1")
    receiver = Receiver(port)
    receiver.status = 200
    events = tracked_events()
    # The first event of every call fails once: its later events must wait for it.
    receiver.fail_once = {e.event_id for e in events if e.seq == 1}
    await receiver.start()
    try:
        async with running(outbox, 5.0), running(sink, 5.0):
            for event in events:
                sink.push(event)
            await wait_until(lambda: len(receiver.accepted()) == len(events), timeout=30, what="all accepted")
        by_call: dict[str, list[int]] = {}
        for r in receiver.accepted():
            doc = json.loads(r["body"])
            by_call.setdefault(doc["call"]["linkedid"], []).append(doc["seq"])
        assert by_call == {"1795237838.1": [1, 2, 3], "1795237857.3": [1], "1795237912.13": [1, 2]}
        assert not receiver.fail_once
    finally:
        await receiver.stop()
        await store.close()


async def test_outcomes_from_ami_share_the_call_log_key(sqlite_url: str) -> None:
    """With calls.outcomes, a finished call gives one DID Optimizer row keyed by its first leg's
    uniqueid; a row call_log already wrote for that uniqueid is not duplicated."""
    config = CallsConfig.model_validate({"enabled": True, "outcomes": True})
    store = Store(sqlite_url, schemas=[metadata, calls_metadata])
    await store.start()
    outbox = Outbox(store, node_id="n1", config=fast_config(), rng=random.Random(1))
    sink = CallSink(config, store=store, outbox=outbox, node_id="n1", outcome_source="telephonyd-ami")
    try:
        await outbox.start()
        # call_log reported the busy call first (its key: agi_uniqueid of the dialing leg).
        await outbox.enqueue("did_optimizer", "1795237857.3", {"uniqueid": "1795237857.3", "source": "call_log"})
        async with running(sink, 5.0):
            events = tracked_events()
            for event in events:
                sink.push(event)
            await wait_until(lambda: sink.written == len(events), what="events stored")
        rows = {r["key"]: r for r in await outbox.list_rows(limit=100)}
        assert set(rows) == {"1795237838.1", "1795237857.3", "1795237912.13"}
        assert rows["1795237857.3"]["payload"]["source"] == "call_log"  # reported once, by call_log
        answered = rows["1795237838.1"]["payload"]
        assert answered["dialStatus"] == "ANSWER" and answered["linkedid"] == "1795237838.1"
        assert answered["leadId"] == "12345" and answered["customerPhone"] == "915555550001"
        assert answered["source"] == "telephonyd-ami"
        # AMD abort: DialEnd says ABORT after the callee answered; Dial() said ANSWER.
        assert rows["1795237912.13"]["payload"]["dialStatus"] == "ANSWER"
        shown = await show_record(store, "1795237857.3")
        assert shown is not None and shown["call_log"]["payload"]["source"] == "call_log"
        async with store.connect() as conn:
            count = (await conn.execute(call_records.select())).all()
        assert len(count) == 3
    finally:
        await outbox.stop(2.0)
        await store.close()


async def test_a_call_record_shows_the_vicidial_dispositions_of_its_legs(store_url: str) -> None:
    """`show_record` joins what the VICIdial source reported for one of the call's legs (keys made by
    the source's own `outbox_key`), oldest first, and nothing reported for another call."""
    from telephonyd.vicidial.payload import LOG, outbox_key

    config = CallsConfig.model_validate({"enabled": True})
    store = Store(store_url, schemas=[metadata, calls_metadata])
    await store.start()
    outbox = Outbox(store, node_id="n1", config=fast_config(), rng=random.Random(1))
    sink = CallSink(config, store=store, outbox=outbox, node_id="n1")
    try:
        await outbox.start()
        async with running(sink, 5.0):
            events = tracked_events()
            for event in events:
                sink.push(event)
            await wait_until(lambda: sink.written == len(events), what="events stored")
        # The agent's SALE on the answered call's callee leg, later corrected to DNC; a busy call's NA
        # and a uniqueid sharing the leg's prefix belong to other calls.
        for uniqueid, status in [("1795237839.2", "SALE"), ("1795237857.3", "NA"), ("1795237839.20", "XFER"),
                                 ("1795237839.2", "DNC")]:
            key = outbox_key(LOG, {"uniqueid": uniqueid}, status)
            await outbox.enqueue("did_optimizer", key, {"uniqueid": uniqueid, "status": status,
                                                        "report": "disposition"})
        shown = await show_record(store, "1795237838.1")
        assert shown is not None and shown["call_log"] is None
        assert [(r["status"], r["payload"]["uniqueid"], r["state"]) for r in shown["vicidial"]] == [
            ("SALE", "1795237839.2", "pending"), ("DNC", "1795237839.2", "pending")]
        busy = await show_record(store, "1795237857.3")
        assert busy is not None and [r["status"] for r in busy["vicidial"]] == ["NA"]
        other = await show_record(store, "1795237912.13")
        assert other is not None and other["vicidial"] == []
    finally:
        await outbox.stop(2.0)
        await store.close()
