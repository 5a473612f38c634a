"""FastAGIServer against the fake Asterisk over loopback TCP (port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from telephonyd.config import FastAGIConfig
from telephonyd.errors import ConfigError, ProtocolError
from telephonyd.fastagi import AGICommandTimeout, AGISession, FastAGIServer
from telephonyd.fastagi.protocol import check_sendable
from telephonyd.logs import ContextFilter
from tests import helpers
from tests.conftest import ASTERISK_FIXTURES
from tests.fakes.agi import FakeChannel, recorded_channels, run_session

RESULT_SET = 'SET VARIABLE TELEPHONYD_RESULT "{}"'


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Any], **overrides: Any) -> AsyncIterator[FastAGIServer]:
    config = FastAGIConfig(listen=overrides.pop("listen", ["127.0.0.1:0"]), **overrides)
    server = FastAGIServer(config, routes)
    await server.start()
    runner = asyncio.create_task(server.run())
    try:
        yield server
    finally:
        await server.stop(1.0)
        await asyncio.wait_for(runner, 2.0)


def addr(server: FastAGIServer) -> tuple[str, int]:
    return server.bound_addresses[0]


wait_until = functools.partial(helpers.wait_until, timeout=5.0, interval=0.005)


# -- replaying the recordings --------------------------------------------------------------------


def _sendable(command: str) -> bool:
    try:
        check_sendable(command)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("channel", recorded_channels(), ids=lambda c: c.name)
async def test_replays_every_recorded_session(channel: FakeChannel):
    """Every recorded command telephonyd may send, in order, gets the recorded reply through the server."""
    exchanges = [ex for ex in channel.exchanges if _sendable(ex.command)]
    hangup_at = channel.hangup_before_command
    if hangup_at:  # the same place among the commands kept
        kept = sum(1 for ex in channel.exchanges[: hangup_at - 1] if _sendable(ex.command))
        hangup_at = kept + 1 if kept < len(exchanges) else None
    seen: dict[str, Any] = {}

    async def replay(session: AGISession) -> str:
        seen["replies"] = [(await session.command(ex.command)).text for ex in exchanges]
        seen.update(hungup=session.hungup, env=session.env, script=session.script)
        return "REPLAYED"

    routes = {name: replay for name in ("call_log", "amd_log", "agi_probe", "agi_probe_h")}
    async with serving(routes) as server:
        transcript = await run_session(*addr(server), channel, hangup_before_command=hangup_at)

    assert exchanges
    assert seen["replies"] == [ex.reply for ex in exchanges]
    assert transcript.commands == [ex.command for ex in exchanges] + [RESULT_SET.format("REPLAYED")]
    assert transcript.result == "REPLAYED"
    assert transcript.closed_by_server
    assert seen["hungup"] is (hangup_at is not None)
    assert seen["env"] == channel.env
    assert seen["script"] == channel.env["network_script"]


async def test_session_helpers_on_a_recorded_answered_call():
    channel = FakeChannel.from_recording(ASTERISK_FIXTURES / "vicidial" / "01_ANSWER_agi2_h-vicidial_4577.txt")
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen["route"], seen["tail"], seen["args"] = session.route, session.route_tail, session.args
        seen["dialstatus"] = await session.get_variable("DIALSTATUS")
        seen["amd"] = await session.get_variable("AMDSTATUS")
        seen["progress"] = await session.get_variable("PROGRESSTIME")
        seen["tech"] = await session.get_full_variable("${HANGUPCAUSE(${HANGUPCAUSE_KEYS()},tech)}")
        seen["linked"] = await session.get_full_variable("${CHANNEL(linkedid)}")
        seen["nothing"] = await session.get_full_variable("${NOT_THERE}")
        await session.set_variable("TD_NOTE", 'say "hi" \\ bye')
        await session.verbose("call_log done")
        return "LOGGED"

    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), channel)

    assert seen == {
        "route": "call_log",
        "tail": "--HVcauses--PRI-----NODEBUG-----16-----ANSWER-----3-----2-----SIP 200 OK)",
        "args": [],
        "dialstatus": "ANSWER",
        "amd": None,
        "progress": "",
        "tech": "SIP 200 OK",
        "linked": "1795237838.1",
        "nothing": "",
    }
    assert transcript.variables_set == {"TD_NOTE": 'say "hi" \\ bye', "TELEPHONYD_RESULT": "LOGGED"}


async def test_params_and_args_reach_the_handler():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen.update(params=session.params, args=session.args, tail=session.route_tail)
        return "OK"

    channel = FakeChannel.synthetic(script="call_log?campaign=C1&note=a%20b", args=["BUSY", "17"])
    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), channel)
    assert seen == {
        "params": {"campaign": "C1", "note": "a b"},
        "args": ["BUSY", "17"],
        "tail": "?campaign=C1&note=a%20b",
    }
    assert transcript.result == "OK"


# -- hangups -------------------------------------------------------------------------------------


async def test_hangup_line_between_a_command_and_its_reply():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen["uniqueid"] = await session.get_variable("UNIQUEID")
        seen["hungup_before"] = session.hungup
        seen["channel"] = await session.get_variable("CHANNEL")  # HANGUP arrives before this reply
        seen["hungup_after"] = session.hungup
        seen["dialstatus"] = await session.get_variable("DIALSTATUS")
        await session.set_variable("AFTER_HANGUP", "yes")
        return "DONE"

    channel = FakeChannel.synthetic({"DIALSTATUS": "NOANSWER"})
    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), channel, hangup_before_command=2)

    assert seen == {
        "uniqueid": "1795237838.1",
        "hungup_before": False,
        "channel": "PJSIP/1010-00000001",
        "hungup_after": True,
        "dialstatus": "NOANSWER",
    }
    assert transcript.variables_set == {"AFTER_HANGUP": "yes", "TELEPHONYD_RESULT": "DONE"}
    assert transcript.closed_by_server


async def test_hangup_sent_right_after_the_block_is_skipped():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen["uniqueid"] = await session.get_variable("UNIQUEID")
        seen["hungup"] = session.hungup
        return "DONE"

    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), FakeChannel.synthetic(), hangup_before_command=0)
    assert seen == {"uniqueid": "1795237838.1", "hungup": True}
    assert transcript.result == "DONE"


async def test_handlers_cannot_send_a_command_outside_sent_commands():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        for line in ("HANGUP", "EXEC Dial PJSIP/1011", "GOSUB sub s 1"):
            try:
                await session.command(line)
            except ValueError as exc:
                seen[line] = "SENT_COMMANDS" in str(exc)
        return "DONE"

    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), FakeChannel.synthetic(), hangup_before_command=None)
    assert seen == {"HANGUP": True, "EXEC Dial PJSIP/1011": True, "GOSUB sub s 1": True}
    assert transcript.commands == [RESULT_SET.format("DONE")]


# -- staying in step -----------------------------------------------------------------------------


async def test_a_usage_error_keeps_the_session_in_step():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        usage = await session.command("GET VARIABLE")
        seen["usage"] = (usage.code, usage.text)
        seen["channel"] = await session.get_variable("CHANNEL")
        return "OK"

    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), FakeChannel.synthetic())
    assert seen == {
        "usage": (520, "520 Invalid command syntax.  Proper usage not available."),  # as 22.10.1 answers
        "channel": "PJSIP/1010-00000001",
    }
    assert transcript.result == "OK"


async def test_concurrent_commands_from_one_handler_are_serialised():
    variables = {f"V{i}": f"value-{i}" for i in range(30)}

    async def handler(session: AGISession) -> str:
        values = await asyncio.gather(*(session.get_variable(name) for name in variables))
        return "OK" if values == list(variables.values()) else "MIXED"

    async with serving({"call_log": handler}) as server:
        transcript = await run_session(*addr(server), FakeChannel.synthetic(variables))
    assert transcript.result == "OK"
    assert len(transcript.commands) == 31


async def test_command_timeout_makes_the_session_unusable_and_sends_nothing_more():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        try:
            await session.get_variable("X")
        except AGICommandTimeout:
            seen["timeout"] = True
        try:
            await session.get_variable("Y")
        except ProtocolError as exc:
            seen["second"] = type(exc).__name__
        return "SURVIVED"

    async with serving({"call_log": handler}, command_timeout_s=0.2) as server:
        reader, writer = await asyncio.open_connection(*addr(server))
        writer.write(FakeChannel.synthetic().env_block)
        started = time.monotonic()
        received = await asyncio.wait_for(reader.read(), 5.0)  # never answers; reads until EOF
        elapsed = time.monotonic() - started
        writer.close()
        await wait_until(lambda: server.counters.duration_count == 1)
        assert server.counters.results == {"SURVIVED": 1}
    assert received == b"GET VARIABLE X\n"  # no second command, no SET VARIABLE after the timeout
    assert seen == {"timeout": True, "second": "ProtocolError"}
    assert 0.15 < elapsed < 2.0


# -- results and closing -------------------------------------------------------------------------


async def test_result_word_and_close_after_return_raise_timeout_and_bad_result():
    async def ok(session: AGISession) -> str:
        await session.get_variable("UNIQUEID")
        return "DONE"

    async def boom(session: AGISession) -> str:
        await session.get_variable("UNIQUEID")
        raise RuntimeError("handler bug")

    async def slow(session: AGISession) -> str:
        await asyncio.Event().wait()
        return "NEVER"

    async def bad(session: AGISession) -> str:
        return None  # type: ignore[return-value]

    routes = {"ok": ok, "boom": boom, "slow": slow, "bad": bad}
    async with serving(routes, session_timeout_s=0.3) as server:
        host, port = addr(server)
        results = {}
        for route in routes:
            t = await run_session(host, port, FakeChannel.synthetic(script=route), timeout=5.0)
            assert t.closed_by_server, route
            results[route] = (t.result, t.duration)
        assert server.counters.sessions == {
            ("ok", "DONE"): 1,
            ("boom", "ERROR"): 1,
            ("slow", "TIMEOUT"): 1,
            ("bad", "ERROR"): 1,
        }
    assert {k: v[0] for k, v in results.items()} == {"ok": "DONE", "boom": "ERROR", "slow": "TIMEOUT", "bad": "ERROR"}
    assert 0.25 < results["slow"][1] < 2.0
    assert results["ok"][1] < 1.0


async def test_unknown_route_sets_unknown_script():
    async with serving({"call_log": lambda s: asyncio.sleep(0, "X")}) as server:
        t = await run_session(*addr(server), FakeChannel.synthetic(script="no_such_thing--a--b"))
        assert server.counters.sessions == {("unknown", "UNKNOWN_SCRIPT"): 1}
    assert t.commands == [RESULT_SET.format("UNKNOWN_SCRIPT")]
    assert t.closed_by_server


async def test_block_without_network_script_is_an_unknown_script():
    async with serving({"call_log": lambda s: asyncio.sleep(0, "X")}) as server:
        t = await run_session(*addr(server), FakeChannel.synthetic(), block=b"agi_channel: PJSIP/1-1\n\n")
    assert t.result == "UNKNOWN_SCRIPT"


async def test_builtin_health_route():
    async with serving({}) as server:
        t = await run_session(*addr(server), FakeChannel.synthetic(script="health"))
    assert t.commands == [RESULT_SET.format("OK")]
    assert t.closed_by_server


async def test_handler_runs_inside_the_call_log_context(caplog: pytest.LogCaptureFixture):
    caplog.handler.addFilter(ContextFilter())
    log = logging.getLogger("tests.fastagi.handler")

    async def handler(session: AGISession) -> str:
        log.warning("inside the handler")
        return "OK"

    caplog.set_level(logging.INFO)
    async with serving({"call_log": handler}) as server:
        await run_session(*addr(server), FakeChannel.synthetic(uniqueid="1700000000.42", channel="PJSIP/7-00000009"))
        await run_session(*addr(server), FakeChannel.synthetic(script="nope", uniqueid="1700000000.43"))
    inside = next(r for r in caplog.records if r.getMessage() == "inside the handler")
    assert (inside.uniqueid, inside.agi_script, inside.channel) == ("1700000000.42", "call_log", "PJSIP/7-00000009")
    unknown = next(r for r in caplog.records if r.getMessage() == "FastAGI unknown script")
    assert unknown.uniqueid == "1700000000.43" and unknown.peer.startswith("127.0.0.1:")


# -- admission -----------------------------------------------------------------------------------


async def test_client_address_not_allowed_is_closed_at_once():
    called = []

    async def handler(session: AGISession) -> str:
        called.append(session)
        return "OK"

    async with serving({"call_log": handler}, allowed_clients=["10.0.0.0/8", "::1/128"]) as server:
        t = await run_session(*addr(server), FakeChannel.synthetic(), timeout=5.0)
        assert server.health()["refused"] == {"address": 1}
    assert t.closed_by_server and t.commands == [] and t.duration < 1.0
    assert called == []


async def test_sessions_beyond_max_sessions_are_closed_at_once():
    release = asyncio.Event()

    async def handler(session: AGISession) -> str:
        await release.wait()
        return "DONE"

    async with serving({"call_log": handler}, max_sessions=1) as server:
        host, port = addr(server)
        first = asyncio.create_task(run_session(host, port, FakeChannel.synthetic()))
        await wait_until(lambda: server.health()["sessions_active"] == 1)
        second = await run_session(host, port, FakeChannel.synthetic(), timeout=5.0)
        assert second.closed_by_server and second.commands == [] and second.duration < 1.0
        assert server.health()["refused"] == {"overload": 1}
        release.set()
        assert (await first).result == "DONE"


async def test_several_listen_addresses_serve():
    async def handler(session: AGISession) -> str:
        return "OK"

    async with serving({"call_log": handler}, listen=["127.0.0.1:0", "127.0.0.1:0"]) as server:
        assert len(server.bound_addresses) == 2
        for host, port in server.bound_addresses:
            assert port != 0
            assert (await run_session(host, port, FakeChannel.synthetic())).result == "OK"
        assert server.health()["bound_addresses"] == [f"{h}:{p}" for h, p in server.bound_addresses]


async def test_unbindable_address_is_a_config_error():
    server = FastAGIServer(FastAGIConfig(listen=["192.0.2.1:0"]), {})
    with pytest.raises(ConfigError) as info:
        await server.start()
    assert info.value.path == "fastagi.listen"
    assert server.health()["ok"] is False


# -- stop ----------------------------------------------------------------------------------------


async def test_stop_refuses_new_calls_and_drains_sessions_in_flight():
    release = asyncio.Event()

    async def handler(session: AGISession) -> str:
        await release.wait()
        return (await session.get_variable("UNIQUEID")) or "NONE"

    config = FastAGIConfig(listen=["127.0.0.1:0"])
    server = FastAGIServer(config, {"call_log": handler})
    await server.start()
    runner = asyncio.create_task(server.run())
    host, port = addr(server)
    in_flight = asyncio.create_task(run_session(host, port, FakeChannel.synthetic(uniqueid="1.7")))
    await wait_until(lambda: server.health()["sessions_active"] == 1)

    stopping = asyncio.create_task(server.stop(5.0))
    await wait_until(lambda: server.health()["state"] == "stopping")
    assert server.health()["ok"] is False
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    assert not stopping.done()

    release.set()
    transcript = await in_flight
    await asyncio.wait_for(stopping, 5.0)
    await asyncio.wait_for(runner, 1.0)
    assert transcript.result == "1.7" and transcript.closed_by_server
    assert server.health()["state"] == "stopped"


async def test_stop_cancels_sessions_that_outlive_the_drain_timeout():
    async def handler(session: AGISession) -> str:
        await asyncio.Event().wait()
        return "NEVER"

    server = FastAGIServer(FastAGIConfig(listen=["127.0.0.1:0"], session_timeout_s=60), {"call_log": handler})
    await server.start()
    session = asyncio.create_task(run_session(*addr(server), FakeChannel.synthetic(), timeout=10.0))
    await wait_until(lambda: server.health()["sessions_active"] == 1)
    started = time.monotonic()
    await server.stop(0.2)
    transcript = await asyncio.wait_for(session, 5.0)
    assert time.monotonic() - started < 2.0
    assert transcript.closed_by_server and transcript.result is None
    assert server.counters.results == {"CANCELLED": 1}
    assert server.health()["sessions_active"] == 0



async def test_hangup_in_the_same_packet_as_the_block_is_not_lost():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen["value"] = await session.get_variable("X")
        return "HUNG" if session.hungup else "LIVE"

    async with serving({"call_log": handler}) as server:
        reader, writer = await asyncio.open_connection(*addr(server))
        writer.write(FakeChannel.synthetic().env_block + b"HANGUP\n")
        assert await asyncio.wait_for(reader.readline(), 5.0) == b"GET VARIABLE X\n"
        writer.write(b"200 result=1 (x)\n")
        assert await asyncio.wait_for(reader.readline(), 5.0) == b'SET VARIABLE TELEPHONYD_RESULT "HUNG"\n'
        writer.write(b"200 result=1\n")
        assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by the server
        writer.close()
    assert seen == {"value": "x"}


async def test_reply_lines_up_to_the_limit_pass_and_longer_ones_end_the_session():
    seen: dict[str, Any] = {}

    async def handler(session: AGISession) -> str:
        seen["big"] = len(await session.get_variable("BIG") or "")
        try:
            await session.get_variable("HUGE")
        except ProtocolError as exc:
            seen["huge"] = type(exc).__name__
        seen["usable"] = session.usable
        return "DONE"

    channel = FakeChannel.synthetic({"BIG": "b" * 60_000, "HUGE": "h" * 70_000})
    async with serving({"call_log": handler}, max_reply_bytes=65536) as server:
        transcript = await run_session(*addr(server), channel)
    assert seen == {"big": 60_000, "huge": "LimitExceeded", "usable": False}
    assert transcript.commands == ["GET VARIABLE BIG", "GET VARIABLE HUGE"]  # no SET after it
    assert transcript.closed_by_server
