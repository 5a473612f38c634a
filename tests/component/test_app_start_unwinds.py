"""A start that fails half-way stops what already started (`App._start` enters the components
through an `AsyncExitStack`): the outbox starts first, the HTTP listener cannot bind a port that
is taken, and the outbox is stopped before `run` returns 1."""

from __future__ import annotations

import socket
from pathlib import Path

from telephonyd.app import App
from telephonyd.config import Config


async def test_a_listener_that_cannot_bind_stops_the_started_outbox(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = Config.model_validate({
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/t.db"},
            "http": {"listen": f"127.0.0.1:{port}"},
            "fastagi": {"listen": "127.0.0.1:0"},
            "ameyo": {"enabled": False},
        })
        app = App(config)
        assert await app.run() == 1
    assert list(app.components)[:2] == ["outbox", "http"]
    assert app.components["outbox"].health()["state"] == "stopped"
