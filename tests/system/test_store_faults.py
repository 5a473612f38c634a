"""A damaged, emptied or unusable store, against the daemon and the CLI as processes.

What must hold: a store that existed is never replaced by a new, empty one (the daemon refuses to
start, exit 78, and keeps the file); a permanent store error ends the process with a clear message
instead of a retry loop, while a database server that is down is waited for; ``db check`` tells,
``db recover`` salvages into a new file and keeps the damaged one; the CLI finds the store through the
config file's directory whatever its working directory, and never creates one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.fakes.agi import FakeChannel, run_session
from tests.helpers import wait_until

from .cli_run import telephonyd
from .daemon import Daemon, free_port

pytestmark = pytest.mark.system

EX_CONFIG = 78


def hangup(i: int) -> FakeChannel:
    return FakeChannel.synthetic(
        {"DIALSTATUS": "ANSWER", "HANGUPCAUSE": "16", "campaign_id": "STORE", "agent": "6001",
         "OPTIMIZER_DID": "15551230001", "lead_id": str(7000 + i)},
        args=["ANSWER", "16"], uniqueid=f"1795500000.{i}", extension="h", priority="2",
        channel=f"PJSIP/1010-{i:08x}", name=f"store-{i}",
    )


async def queue_outcomes(daemon: Daemon, count: int) -> None:
    """Play ``count`` hangup sessions; every one must be acknowledged QUEUED (stored durably)."""
    results = await asyncio.gather(*(run_session("127.0.0.1", daemon.agi_port, hangup(i), timeout=15)
                                     for i in range(count)))
    assert [r.result for r in results] == ["QUEUED"] * count


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]


@pytest.fixture
def filled(tmp_path: Path) -> Daemon:
    """A daemon whose store holds 120 acknowledged, undelivered outcomes (the DID Optimizer is
    off); stopped."""
    daemon = Daemon(tmp_path / "d", {})
    daemon.start()
    try:
        asyncio.run(queue_outcomes(daemon, 120))
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert pending(store_file(daemon)) == 120
    return daemon


def store_file(daemon: Daemon) -> Path:
    return daemon.workdir / "telephonyd.db"


def start_and_wait_exit(daemon: Daemon, timeout: float = 60.0) -> int:
    daemon.start(wait_ready=False)
    assert daemon.proc is not None
    try:
        return daemon.proc.wait(timeout)
    finally:
        daemon.close()


def test_store_emptied_to_zero_bytes_is_never_recreated(filled: Daemon) -> None:
    db = store_file(filled)
    os.truncate(db, 0)
    assert start_and_wait_exit(filled) == EX_CONFIG
    assert f"the store {db} is empty (0 bytes) but the store was created at" in filled.logs()
    assert db.stat().st_size == 0, "the emptied file must be kept as it is, not made a new store"
    assert "READY=1" not in filled.drain_notifications()
    check = telephonyd("db", "check", "-c", str(filled.config_path))
    assert check.returncode == 1 and "empty (0 bytes)" in check.stderr
    stats = telephonyd("outbox", "stats", "-c", str(filled.config_path))
    assert stats.returncode == 1 and "empty (0 bytes)" in stats.stderr
    assert db.stat().st_size == 0


def test_store_deleted_with_its_marker_left_is_refused(filled: Daemon) -> None:
    db = store_file(filled)
    db.unlink()
    assert start_and_wait_exit(filled) == EX_CONFIG
    assert f"the store {db} is missing but the store was created at" in filled.logs()
    assert not db.exists()
    # Accepting the loss on purpose: db recover puts a new, empty store in place.
    recovered = telephonyd("db", "recover", "-c", str(filled.config_path))
    assert recovered.returncode == 0, recovered.stderr
    assert "a new, empty store is in place" in recovered.stdout
    filled.start()
    try:
        assert pending(db) == 0
    finally:
        assert filled.stop() == 0
        filled.close()


@pytest.mark.parametrize("damage", ["garbage header", "truncated"])
def test_damaged_store_exits_at_once_and_is_recovered_by_db_recover(filled: Daemon, damage: str) -> None:
    db = store_file(filled)
    size = db.stat().st_size
    if damage == "garbage header":
        with open(db, "r+b") as file:
            file.write(os.urandom(100))
        expected = "is not a SQLite database"
    else:
        os.truncate(db, size - 3 * 4096)  # the last three pages lost (a file cut short)
        expected = "is damaged"
    before = db.read_bytes()
    assert start_and_wait_exit(filled) == EX_CONFIG  # at once, not a retry loop
    record = next(r for r in filled.log_records() if r.get("msg") == "the store cannot be used; exiting")
    assert expected in record["error"] and str(db) in record["error"]
    assert db.read_bytes() == before, "the damaged file must be kept untouched"

    check = telephonyd("db", "check", "-c", str(filled.config_path))
    assert check.returncode == 1 and expected in check.stderr
    recovered = telephonyd("db", "recover", "--json", "-c", str(filled.config_path))
    assert recovered.returncode == 0, recovered.stderr
    result = json.loads(recovered.stdout)
    kept = Path(result["damaged_kept_as"])
    assert kept.read_bytes() == before
    assert telephonyd("db", "check", "-c", str(filled.config_path)).returncode == 0
    if damage == "truncated":
        # The rows on the pages that are left come back.
        assert 0 < result["tables"]["outbox"] <= 120
    filled.start()
    try:
        assert pending(db) == result["tables"].get("outbox", 0)
    finally:
        assert filled.stop() == 0
        filled.close()


def test_zero_byte_store_recovered_on_purpose_starts_empty(filled: Daemon) -> None:
    """The operator's way out when no backup exists: db recover keeps the empty file and the
    daemon starts with an empty store."""
    db = store_file(filled)
    os.truncate(db, 0)
    result = telephonyd("db", "recover", "-c", str(filled.config_path))
    assert result.returncode == 0, result.stderr
    assert "the damaged store is kept as" in result.stdout
    filled.start()
    try:
        assert pending(db) == 0
    finally:
        filled.stop()
        filled.close()
    assert [p for p in db.parent.iterdir() if ".damaged-" in p.name and p.stat().st_size == 0]


def test_unwritable_state_directory_exits_with_a_clear_message(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o555)
    config = tmp_path / "telephonyd.yml"
    config.write_text(f"store:\n  url: sqlite+aiosqlite:///{state}/telephonyd.db\nfastagi:\n"
                      f"  listen: 127.0.0.1:{free_port()}\nhttp:\n  listen: 127.0.0.1:{free_port()}\n")
    config.chmod(0o600)
    result = telephonyd("run", "-c", str(config), without_dac_override=True)
    assert result.returncode == EX_CONFIG, result.stderr[-2000:]
    assert f"the state directory {state} is not writable" in result.stderr


def test_database_server_down_is_waited_for_not_fatal(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    daemon = Daemon(tmp_path / "d", {"store": {"url": f"mysql+aiomysql://telephonyd@127.0.0.1:{port}/telephonyd",
                                               "connect_timeout_s": 0.5}})
    try:
        daemon.start(wait_ready=False)
        asyncio.run(wait_until(
            lambda: sum(r.get("msg") == "store unavailable, retrying" for r in daemon.log_records()) >= 2,
            timeout=30, what="two retries of the store", interval=0.1))
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        daemon.close()


def test_cli_finds_the_store_beside_the_config_and_never_creates_one(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "d", {})
    etc = daemon.workdir / "etc"
    etc.mkdir()
    config = dict(daemon.config, store={"url": "sqlite+aiosqlite:///state/telephonyd.db"})
    import yaml

    daemon.config_path = etc / "telephonyd.yml"
    daemon.config_path.write_text(yaml.safe_dump(config))
    daemon.config_path.chmod(0o600)
    daemon.start()  # its working directory is daemon.workdir, not etc/
    try:
        asyncio.run(queue_outcomes(daemon, 6))
    finally:
        assert daemon.stop() == 0
        daemon.close()
    assert pending(etc / "state" / "telephonyd.db") == 6
    assert not (daemon.workdir / "state").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stats = telephonyd("outbox", "stats", "--json", "-c", str(daemon.config_path), cwd=elsewhere)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["by_state"]["pending"] == 6
    assert list(elsewhere.iterdir()) == []

    other = elsewhere / "other.yml"
    other.write_text("store:\n  url: sqlite+aiosqlite:///nostate/telephonyd.db\n")
    for command in (["outbox", "stats"], ["requests"], ["db", "upgrade"], ["db", "check"]):
        result = telephonyd(*command, "-c", str(other), cwd=tmp_path)
        assert result.returncode == 1, (command, result.stdout)
        assert f"no store at {elsewhere}/nostate/telephonyd.db" in result.stderr, command
    assert list(elsewhere.iterdir()) == [other]
