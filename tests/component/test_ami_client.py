"""AMIClient against the fake Asterisk manager on a loopback socket."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from telephonyd.ami import AMIClient, AMIMessage, AMINotConnected
from telephonyd.ami.errors import AMIActionTimeout
from telephonyd.ami.framing import encode_action
from telephonyd.config import AMIConfig
from telephonyd.errors import ConfigError
from tests.fakes.ami import FakeAMIServer, UnrecordedAction
from tests.fakes.ami_wire import recorded_events, value_of
from tests.helpers import running, wait_until

SECRET = "s3cret-ami"


until = functools.partial(wait_until, timeout=5.0, interval=0.005)


def config(fake: FakeAMIServer, **overrides: Any) -> AMIConfig:
    values: dict[str, Any] = {"enabled": True, "port": fake.port, "secret": SECRET, "connect_timeout_s": 1.0,
                              "action_timeout_s": 1.0, "ping_interval_s": 30.0, "ping_timeout_s": 1.0,
                              "backoff_base_s": 0.02, "backoff_max_s": 0.1}
    return AMIConfig(**{**values, **overrides})


@pytest.fixture
async def fake() -> AsyncIterator[FakeAMIServer]:
    async with FakeAMIServer(secret=SECRET, bad_login_delay_s=0.05) as server:
        server.add_endpoint("1010")
        server.register("1010")
        yield server


def resync_counter(client: AMIClient) -> list[float]:
    calls: list[float] = []

    async def on_connect(_client: AMIClient) -> None:
        calls.append(time.monotonic())

    client.on_connect(on_connect)
    return calls


async def test_plain_login_version_and_deterministic_action_ids(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    async with running(client):
        await until(lambda: client.connected and calls)
        health = client.health()
        assert health["ok"] and health["state"] == "connected"
        assert client.banner == "Asterisk Call Manager/11.0.0" and client.ami_version == "11.0.0"
        assert client.asterisk_version == "22.10.1"
        login = fake.actions_named("Login")[0]
        assert value_of(login, "Secret") == SECRET and value_of(login, "Events") == "system,call,agent,security"
        assert value_of(login, "ActionID") == "telephonyd-1"
        reply = await client.action({"Action": "Ping", "ActionID": "ignored"})
        assert reply.get("Ping") == "Pong" and reply.action_id == "telephonyd-3"
    assert fake.actions_named("Logoff"), "stop() logs off"
    assert not client.connected and client.health()["state"] == "stopped"


async def test_md5_challenge_login() -> None:
    fake = await FakeAMIServer(secret=SECRET).start()
    try:
        client = AMIClient(config(fake, auth="md5"))
        async with running(client):
            await until(lambda: client.connected)
            login = fake.actions_named("Login")[0]
            assert value_of(login, "AuthType") == "MD5" and value_of(login, "Key")
            assert value_of(login, "Secret") == ""
            assert [value_of(a, "Action") for a in fake.actions[:2]] == ["Challenge", "Login"]
    finally:
        await fake.stop()  # raises what the fake could not answer


async def test_missing_secret_is_a_config_error(fake: FakeAMIServer) -> None:
    with pytest.raises(ConfigError):
        await AMIClient(config(fake, secret=None)).start()


async def test_rejected_login_backs_off_and_recovers(fake: FakeAMIServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.reject_logins = True
    client = AMIClient(config(fake, backoff_base_s=0.05, backoff_max_s=0.4), rng=random.Random(7))
    async with running(client):
        await until(lambda: len(fake.actions_named("Login")) >= 5, timeout=10)
        health = client.health()
        assert not health["ok"] and health["state"] == "auth_failed" and health["login_failures"] >= 4
        assert "Authentication failed" in (health["last_error"] or "")
        times = list(fake.login_times)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # each retry waits at least half its capped exponential delay (plus Asterisk's own wait)
        assert all(gap >= 0.05 + min(0.4, 0.05 * 2 ** (i + 1)) / 2 * 0.95 for i, gap in enumerate(gaps[:4])), gaps
        assert SECRET not in caplog.text
        fake.reject_logins = False
        await until(lambda: client.connected, timeout=5)
        assert client.health()["state"] == "connected"


async def test_dropped_connection_reconnects_and_resyncs(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    seen: list[AMIMessage] = []
    client.subscribe("ContactStatus", seen.append)
    async with running(client):
        await until(lambda: client.connected and len(calls) == 1)
        fake.drop_connections()
        await until(lambda: len(calls) == 2 and client.connected)
        assert client.health()["connects"] == 2 and client.health()["disconnects"] == 1
        fake.register("1011")
        await until(lambda: len(seen) == 2)
        assert [m.get("ContactStatus") for m in seen] == ["NonQualified", "Reachable"]
        assert seen[0].seq < seen[1].seq


async def test_shutdown_then_fully_booted(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    shutdowns: list[AMIMessage] = []
    client.subscribe("shutdown", shutdowns.append)
    async with running(client):
        await until(lambda: client.connected and len(calls) == 1)
        await fake.shutdown()
        await until(lambda: not client.connected)
        assert shutdowns and shutdowns[0].get("Restart") == "False"
        assert not client.health()["ok"]
        await until(lambda: client.health()["login_failures"] == 0 and client.health()["disconnects"] == 1)
        await fake.boot(fully_booted=False)  # Asterisk up again but still loading modules
        await until(lambda: client.connected and len(calls) == 2)
        fake.finish_boot()  # FullyBooted arrives later: consumers list again
        await until(lambda: len(calls) == 3)


async def test_fully_booted_with_the_login_reply_runs_callbacks_once(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    booted: list[AMIMessage] = []
    client.subscribe("FullyBooted", booted.append)
    async with running(client):
        await until(lambda: booted and calls)
        await client.action({"Action": "Ping"})
        assert len(calls) == 1


async def test_res_pjsip_reload_asks_for_a_resync(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    async with running(client):
        await until(lambda: client.connected and len(calls) == 1)
        fake.emit([("Event", "Reload"), ("Privilege", "system,all"), ("Module", "chan_sip.so"), ("Status", "0")])
        fake.emit([("Event", "Reload"), ("Privilege", "system,all"), ("Module", "res_pjsip.so"), ("Status", "0")])
        await until(lambda: len(calls) == 2)
        await client.action({"Action": "Ping"})
        assert len(calls) == 2


async def test_login_within_two_seconds_of_asterisk_listening_again_however_long_it_was_down() -> None:
    """With the shipped backoff (1 s doubling to 60 s) a long outage used to push the next attempt
    tens of seconds past Asterisk's return; refused connects are now probed every 0.5 s."""
    fake = await FakeAMIServer(secret=SECRET).start()
    client = AMIClient(config(fake, backoff_base_s=1.0, backoff_max_s=60.0))
    calls = resync_counter(client)
    try:
        async with running(client):
            await until(lambda: client.connected and len(calls) == 1)
            await fake.shutdown()  # the port now refuses
            # 8 refused probes: ~4 s down, where doubling backoff would be waiting 4-8 s by now
            await until(lambda: client.health()["connects_refused"] >= 8, timeout=15)
            assert client.health()["state"] == "backoff" and not client.connected
            await fake.boot()
            back = time.monotonic()
            await until(lambda: len(fake.login_times) == 2, timeout=5)
            assert fake.login_times[-1] - back < 2.0
            await until(lambda: client.connected and len(calls) == 2, timeout=5)  # then resync
    finally:
        await fake.stop()


async def test_malformed_message_is_skipped_and_the_session_kept(fake: FakeAMIServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A message with a line that is not ``Key: Value`` is logged and skipped: no disconnect, no resync,
    and the events after it still arrive."""
    client = AMIClient(config(fake))
    calls = resync_counter(client)
    seen: list[str] = []
    client.subscribe("ContactStatus", lambda m: seen.append(m.get("EndpointName") or ""))
    async with running(client):
        await until(lambda: client.connected and len(calls) == 1)
        with caplog.at_level(logging.WARNING, logger="telephonyd.ami"):
            fake.send_garbage()
            fake.register("1011")
            await until(lambda: "1011" in seen)
        assert client.health()["malformed_skipped"] == 1
        assert client.health()["disconnects"] == 0 and len(calls) == 1 and client.connected
        assert "malformed AMI message skipped" in caplog.text


async def test_untrusted_peer_is_disconnected(fake: FakeAMIServer, caplog: pytest.LogCaptureFixture) -> None:
    """A line past the limit (complete or not) still ends the session: its size is not bounded."""
    client = AMIClient(config(fake, max_line_bytes=1024, max_message_bytes=4096))
    calls = resync_counter(client)
    async with running(client):
        await until(lambda: client.connected and len(calls) == 1)
        with caplog.at_level(logging.ERROR, logger="telephonyd.ami"):
            fake.send_oversized_line(8192)
            await until(lambda: client.health()["disconnects"] == 1)
        assert "AMI protocol violation" in caplog.text
        await until(lambda: client.connected and len(calls) == 2)


async def test_silent_asterisk_is_detected_by_ping(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake, ping_interval_s=0.1, ping_timeout_s=0.2))
    async with running(client):
        await until(lambda: client.connected)
        fake.go_silent()
        started = time.monotonic()
        await until(lambda: not client.connected, timeout=3)
        assert time.monotonic() - started < 1.5
        assert "Ping" in (client.health()["last_error"] or "") or "nothing received" in (client.health()["last_error"] or "")
        fake.wake_up()
        await until(lambda: client.connected, timeout=5)


async def test_list_actions(fake: FakeAMIServer) -> None:
    fake.register("1011")
    fake.register("1012", qualify=False)
    client = AMIClient(config(fake))
    async with running(client):
        await until(lambda: client.connected)
        reply, items = await client.list_action({"Action": "PJSIPShowContacts"})
        assert reply.is_success and [m.event for m in items] == ["ContactList"] * 3
        assert {m.get("Endpoint") for m in items} == {"1010", "1011", "1012"}
        reply, items = await client.list_action({"Action": "DeviceStateList"})
        assert {m.get("Device"): m.get("State") for m in items}["PJSIP/1012"] == "NOT_INUSE"
        fake.remove_contacts_silently(list(fake.contacts))
        reply, items = await client.list_action({"Action": "PJSIPShowContacts"})
        assert reply.is_error and reply.get("Message") == "No Contacts found" and items == []
        for action in ("SIPpeers", "IAXpeerlist"):
            reply, items = await client.list_action({"Action": action})
            assert reply.is_error and items == []
            assert reply.get("Message") == (f"Invalid/unknown command: {action}. "
                                            "Use Action: ListCommands to show available commands.")
        assert client.health()["pending_actions"] == 0


async def test_the_client_sends_only_the_actions_it_declares(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake))
    async with running(client):
        await until(lambda: client.connected)
        with pytest.raises(ValueError, match="SENT_ACTIONS"):
            await client.action({"Action": "Originate", "Channel": "Local/100@default"})
    assert not fake.actions_named("Originate")


async def test_the_fake_fails_the_test_on_an_action_asterisk_never_answered() -> None:
    """An action with no recorded reply gets no reply at all: the connection closes and the test fails."""
    fake = await FakeAMIServer(secret=SECRET).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
        writer.write(encode_action({"Action": "Login", "ActionID": "l", "Username": fake.username,
                                    "Secret": SECRET, "Events": "off"}))
        writer.write(encode_action({"Action": "Originate", "ActionID": "o", "Channel": "Local/100@default"}))
        received = await asyncio.wait_for(reader.read(), 5.0)  # up to the fake closing the socket
        writer.close()
        assert b"Authentication accepted" in received and b"ActionID: o" not in received
    finally:
        with pytest.raises(UnrecordedAction, match="Action: Originate"):
            await fake.stop()


async def test_actions_fail_fast_when_not_connected_or_unanswered(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake, action_timeout_s=0.2))
    with pytest.raises(AMINotConnected):
        await client.action({"Action": "Ping"})
    async with running(client):
        await until(lambda: client.connected)
        fake.go_silent()
        with pytest.raises(AMIActionTimeout):
            await client.action({"Action": "Ping"})
        fake.wake_up()


async def test_recorded_call_events_reach_subscribers_in_order(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake, events="on"))
    got: list[AMIMessage] = []
    client.subscribe("*", got.append)
    async with running(client):
        await until(lambda: client.connected)
        got.clear()
        sent = fake.replay("06b_sip_call_agi_ami_events_all.txt")
        await until(lambda: len(got) == sent)
        recorded = recorded_events("06b_sip_call_agi_ami_events_all.txt")
        assert [m.pairs for m in got] == recorded
        assert [m.seq for m in got] == sorted(m.seq for m in got)
        assert client.last_event_at is not None


async def test_event_classes_are_asked_at_login(fake: FakeAMIServer) -> None:
    client = AMIClient(config(fake, events="system"))
    hangups: list[AMIMessage] = []
    contacts: list[AMIMessage] = []
    client.subscribe("Hangup", hangups.append)
    client.subscribe("ContactStatus", contacts.append)
    async with running(client):
        await until(lambda: client.connected)
        fake.replay("ami_all_Hangup_events.txt")
        fake.register("1011")
        await until(lambda: len(contacts) == 2)
        assert hangups == []
