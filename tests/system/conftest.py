from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .daemon import Daemon


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    """Make `Daemon` objects in this test's temp dir; every one is stopped afterwards."""
    made: list[Daemon] = []

    def make(config: dict | None = None, name: str = "d1", env: dict | None = None, nofile: int | None = None) -> Daemon:
        daemon = Daemon(tmp_path / name, config or {}, env=env, nofile=nofile)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()
