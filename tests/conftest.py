"""Shared fixtures: real MariaDB and Mosquitto when reachable, per-test databases and topic prefixes.

Tests that need a service skip with the reason when it is unreachable, unless
``TELEPHONYD_REQUIRE_SERVICES=1`` (set by .ci/run), in which case they fail.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.tops import FakeTops

FIXTURES = Path(__file__).parent / "fixtures"
#: The Asterisk versions recorded under tests/fixtures/asterisk-<version>/ (the first is the default).
ASTERISK_VERSIONS = ("22.10.1", "20.20.1")
ASTERISK_FIXTURES = FIXTURES / f"asterisk-{ASTERISK_VERSIONS[0]}"


def asterisk_fixtures(version: str = ASTERISK_VERSIONS[0]) -> Path:
    """The recordings of one real Asterisk version; ValueError for a version never recorded."""
    if version not in ASTERISK_VERSIONS:
        raise ValueError(f"no recordings of Asterisk {version} (recorded: {', '.join(ASTERISK_VERSIONS)})")
    return FIXTURES / f"asterisk-{version}"

MARIADB_HOST = os.environ.get("TELEPHONYD_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("TELEPHONYD_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("TELEPHONYD_TEST_MARIADB_USER", "root")
MARIADB_PASSWORD = os.environ.get("TELEPHONYD_TEST_MARIADB_PASSWORD", "")
MQTT_HOST = os.environ.get("TELEPHONYD_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("TELEPHONYD_TEST_MQTT_PORT", "1883"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    reason = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("TELEPHONYD_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " and TELEPHONYD_REQUIRE_SERVICES=1")
    pytest.skip(reason + " (set TELEPHONYD_REQUIRE_SERVICES=1 to make this a failure)")


def _mysql_admin(sql: str) -> None:
    import pymysql

    conn = pymysql.connect(
        host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password=MARIADB_PASSWORD, autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _mysql_url(db: str) -> str:
    auth = MARIADB_USER + (f":{MARIADB_PASSWORD}" if MARIADB_PASSWORD else "")
    return f"mysql+aiomysql://{auth}@{MARIADB_HOST}:{MARIADB_PORT}/{db}"


@pytest.fixture
def mariadb_url():
    """A fresh, empty MariaDB database for this test (dropped afterwards), as an aiomysql URL."""
    _need("MariaDB", MARIADB_HOST, MARIADB_PORT)
    name = "td_test_" + uuid.uuid4().hex[:12]
    _mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield _mysql_url(name)
    finally:
        _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mariadb_factory():
    """Make extra fresh MariaDB databases inside one test: ``url = mariadb_factory()``."""
    _need("MariaDB", MARIADB_HOST, MARIADB_PORT)
    made: list[str] = []

    def make() -> str:
        name = "td_test_" + uuid.uuid4().hex[:12]
        _mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        made.append(name)
        return _mysql_url(name)

    yield make
    for name in made:
        _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/telephonyd.db"


@pytest.fixture(params=["sqlite", "mariadb"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on MariaDB."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/telephonyd.db"
    return request.getfixturevalue("mariadb_url")


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of a reachable MQTT broker."""
    _need("Mosquitto", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT


@pytest.fixture
def topic_prefix() -> str:
    """A base topic unique to this test."""
    return "td_test/" + uuid.uuid4().hex[:10]


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session for a sender under test, closed afterwards."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake_tops() -> AsyncIterator[FakeTops]:
    """The fake TopS.II (`tests.fakes.tops`) on a loopback port, closed afterwards."""
    fake = FakeTops()
    await fake.start()
    yield fake
    await fake.close()
