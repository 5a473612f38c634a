"""The web console in Debian's Chromium against the daemon as a process, with a fake AMI replaying
Asterisk 22.10.1's events and a fake DID Optimizer: log in, an agent's change shows within 1 s of
its AMI event, a dead letter appears and is retried, log out; no console error; a wallboard of 200
agents renders in under 1 s (screenshot kept in the artifacts). Screenshots of a failing page too."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest

from telephonyd.diagnostics.testoutcome import SyntheticChannel, synthetic_uniqueid
from tests.fakes.ami import FakeAMIServer
from tests.fakes.did_optimizer import FakeDIDOptimizer, Reply
from tests.system.browser import artifact_dir, launch, new_page

TOKEN = "sys-admin-token"


def console_config(ami_port: int, base_url: str = "http://127.0.0.1:9") -> dict:
    return {
        "ami": {"enabled": True, "port": ami_port, "secret": "ami-s3cret", "auth": "md5"},
        "calls": {"enabled": True},
        "http": {"console": True},
        "outbox": {"poll_interval_s": 0.2},
        "did_optimizer": {"enabled": True, "base_url": base_url},
    }


async def login(page, base: str) -> None:
    await page.goto(base + "/")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("#console:not(.hidden)")


@contextlib.asynccontextmanager
async def shots_on_failure(page, name: str):
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(artifact_dir() / f"{name}-failure.png"), full_page=True)
        raise


async def test_login_live_agent_dead_letter_retry_logout(daemon_factory) -> None:
    async with contextlib.AsyncExitStack() as stack:
        browser = await launch(stack)
        ami = await stack.enter_async_context(FakeAMIServer(secret="ami-s3cret"))
        fake = await stack.enter_async_context(FakeDIDOptimizer())
        ami.add_endpoint("1010")
        ami.add_endpoint("1011")
        ami.register("1010")
        ami.register("1011")
        daemon = daemon_factory(console_config(ami.port, fake.base_url))
        daemon.start()
        base = f"http://127.0.0.1:{daemon.http_port}"
        page = await new_page(browser)
        async with shots_on_failure(page, "flow"):
            await login(page, base)
            card = page.locator('#agents li[data-endpoint="1010"]')
            await card.wait_for()
            await page.wait_for_function("() => document.querySelector('#agents li[data-endpoint=\"1010\"]')"
                                         ".classList.contains('available')")
            # The AMI event, then the card's change, timed in the browser from the moment it is sent.
            await page.evaluate("window.__t0 = performance.now()")
            ami.set_device_state("1010", "INUSE")
            await page.wait_for_function(
                "() => document.querySelector('#agents li[data-endpoint=\"1010\"]').classList.contains('on_call')",
                timeout=1000)
            shown_ms = await page.evaluate("performance.now() - window.__t0")
            (artifact_dir() / "agent-change-ms.txt").write_text(f"{shown_ms:.1f}\n")
            assert shown_ms < 1000, shown_ms
            assert "on call" in (await card.inner_text()).lower()

            # A dead letter: the upstream refuses the outcome (2xx with success:false).
            fake.script(Reply.success_false())
            channel = SyntheticChannel(synthetic_uniqueid(time.time()), port=daemon.agi_port)
            assert await channel.session(False) == "STARTED" and await channel.session(True) == "QUEUED"
            dead = page.locator("#dead tr", has_text=channel.uniqueid)
            await dead.wait_for(timeout=10000)
            assert "Campaign not found" in await dead.inner_text()
            await dead.get_by_role("button", name="Retry").click()
            await page.locator("#recent tr", has_text=channel.uniqueid).wait_for(timeout=10000)
            await dead.wait_for(state="detached", timeout=5000)
            assert fake.deliveries[channel.uniqueid] == 1

            await page.get_by_role("button", name="Log out").click()
            await page.wait_for_selector("#login-panel:not(.hidden)")
            cookies = await page.context.cookies()
            async with aiohttp.ClientSession() as http:
                jar = {c["name"]: c["value"] for c in cookies}
                async with http.get(base + "/status", cookies=jar) as resp:
                    assert resp.status == 401
            assert page.errors == []
        assert daemon.stop() == 0
        assert TOKEN not in daemon.logs()


@pytest.mark.parametrize("width,height", [(1920, 1080), (390, 844)])
async def test_wallboard_of_200_agents_renders_in_under_a_second(daemon_factory, width: int, height: int) -> None:
    async with contextlib.AsyncExitStack() as stack:
        browser = await launch(stack)
        ami = await stack.enter_async_context(FakeAMIServer(secret="ami-s3cret"))
        for n in range(200):
            ami.add_endpoint(str(3000 + n))
            ami.register(str(3000 + n))
        for n in range(0, 200, 7):
            ami.set_device_state(str(3000 + n), "INUSE")
        for n in range(3, 200, 11):
            ami.set_device_state(str(3000 + n), "RINGING")
        daemon = daemon_factory(console_config(ami.port))
        daemon.start()
        base = f"http://127.0.0.1:{daemon.http_port}"

        async def known() -> bool:
            code, data = await daemon.get("/api/ami/status")
            return code == 200 and data.get("agents") == 200

        deadline = time.monotonic() + 30
        while not await known():
            assert time.monotonic() < deadline, "the daemon never knew 200 agents"
            await asyncio.sleep(0.1)
        page = await new_page(browser, width, height)
        async with shots_on_failure(page, f"wallboard-{width}"):
            await page.goto(base + "/")
            await page.get_by_label("Admin token").fill(TOKEN)
            await page.evaluate("window.__t0 = performance.now()")
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_function("() => document.querySelectorAll('#agents li').length === 200",
                                         timeout=10000)
            render_ms = await page.evaluate("performance.now() - window.__t0")
            (artifact_dir() / f"wallboard-200-{width}x{height}-ms.txt").write_text(f"{render_ms:.1f}\n")
            await page.screenshot(path=str(artifact_dir() / f"wallboard-200-{width}x{height}.png"),
                                  full_page=width < 1000)
            assert render_ms < 1000, render_ms
            assert await page.locator("#agents li.on_call").count() > 20
            # Nothing wider than the screen on a phone.
            assert await page.evaluate("document.documentElement.scrollWidth") <= width
            assert page.errors == []
        assert daemon.stop() == 0
