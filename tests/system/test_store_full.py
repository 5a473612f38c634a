"""The store's disk fills up under the running daemon: /readyz must say not ready (and /status
why) while the store refuses writes, and ready again once space is back, with no traffic needed.

The store lives on a small tmpfs mounted for the test (needs root and permission to mount).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.helpers import wait_until

from .daemon import Daemon

pytestmark = pytest.mark.system


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full (every last block); returns it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    file.write(b"\0" * chunk)
    return filler


def hangup(i: int) -> FakeChannel:
    return FakeChannel.synthetic(
        {"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "campaign_id": "FULL", "agent": "6001",
         "OPTIMIZER_DID": "15551230001", "lead_id": str(i), "pad": "x" * 2000},
        args=["ANSWER", "16"], uniqueid=f"1795800000.{i}", extension="h", priority="2",
        channel=f"PJSIP/1010-{i:08x}", name=f"full-{i}",
    )


async def test_readyz_follows_whether_the_store_accepts_writes(tmp_path: Path, small_disk: Path) -> None:
    daemon = Daemon(tmp_path / "d", {"store": {"url": f"sqlite+aiosqlite:///{small_disk}/telephonyd.db"}})
    try:
        await asyncio.to_thread(daemon.start)
        assert await daemon.get("/readyz") == (200, {"ready": True})
        filler = fill(small_disk)
        results = []
        for i in range(200):  # SQLite reuses WAL space for a while: play until a session is refused
            transcript = await run_session("127.0.0.1", daemon.agi_port, hangup(i), timeout=15)
            results.append(transcript.result)
            if transcript.result != "QUEUED":
                break
        assert results[-1] == "ERROR", results
        code, body = await daemon.get("/readyz")
        assert (code, body) == (503, {"ready": False})
        status = (await daemon.get("/status"))[1]
        store = status["components"]["store"]
        assert store["ok"] is False and store["state"] == "refusing writes"
        assert "full" in store["write_error"].lower(), store

        filler.unlink()  # space is back; no traffic arrives meanwhile

        async def ready() -> bool:
            return (await daemon.get("/readyz"))[0] == 200

        await wait_until(ready, timeout=30, what="/readyz ready again", interval=0.2)
        store = (await daemon.get("/status"))[1]["components"]["store"]
        assert store["ok"] is True and store["write_error"] is None
        transcript = await run_session("127.0.0.1", daemon.agi_port, hangup(999), timeout=15)
        assert transcript.result == "QUEUED"
        assert daemon.stop() == 0
    finally:
        daemon.close()
