"""Metrics are owned by the components (`telephonyd.metrics.Section`), not parsed from ``health()``:
every feature built as the app builds it keeps exporting the same samples when each component's
``health()`` renames all its keys (as a ``/status`` change would) or answers nothing but ``ok``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from telephonyd import wiring
from telephonyd.config import Config
from telephonyd.feature import Feature
from telephonyd.metrics import MetricsExporter, MetricSources
from telephonyd.outbox import Outbox
from telephonyd.store import Store
from telephonyd.web import HTTPServer
from tests.unit.test_metrics import parse, value

#: Samples that are not a component's own figures (process, scrape bookkeeping, health's ``ok``).
NOT_OWNED = ("telephonyd_component_up", "telephonyd_build_info", "telephonyd_start_time_seconds",
             "telephonyd_metrics_collect_errors_total")


async def status() -> dict[str, Any]:
    return {"ok": True}


async def ready() -> bool:
    return True


async def build(tmp_path: Path, session: aiohttp.ClientSession) -> list[Feature]:
    config = Config.model_validate({
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path}/t.db"},
        "http": {"listen": "127.0.0.1:0"},
        "fastagi": {"listen": "127.0.0.1:0"},
        "ameyo": {"enabled": True},
        "ami": {"enabled": True},
        "mqtt": {"enabled": True},
    })
    store = Store(config.store.url.get_secret_value(), schemas=[])
    outbox = Outbox(store, node_id=config.node_id, config=config.outbox)
    senders = wiring.Senders(outbox)
    http = HTTPServer(config.http, status=status, ready=ready)

    async def started(_store: Store) -> bool:
        return True

    return [
        wiring.outbox_feature(config, senders, session),
        wiring.http_feature(http),
        wiring.fastagi_feature(config, store, outbox, max_sessions=None),
        wiring.ameyo_feature(config, store, senders, session),
        *await wiring.ami_features(config, store, senders, session, http.authorized, started),
    ]


def owned(samples: dict) -> dict:
    return {key: v for key, v in samples.items() if key[0] not in NOT_OWNED}


def renamed(health: Any) -> Any:
    return lambda: {f"{key}_renamed": v for key, v in health().items()}


@pytest.mark.parametrize("change", ["rename every key", "only ok"])
async def test_a_changed_health_does_not_change_a_metric(change: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as session:
        features = await build(tmp_path, session)
        components = {name: c for f in features for name, c in f.components.items()}
        assert {"outbox", "http", "fastagi", "ameyo", "contacts", "presence", "mqtt", "ami"} <= set(components)
        # Figures each component keeps in its own typed state (and showed in its health before).
        fastagi = components["fastagi"]
        fastagi.counters.observe("call_log", "QUEUED", 0.02)  # type: ignore[attr-defined]
        components["ameyo"].counts["queued"] += 2  # type: ignore[attr-defined]
        components["mqtt"].published = 5  # type: ignore[attr-defined]
        components["contacts"].counters["resyncs"] += 1  # type: ignore[attr-defined]
        exporter = MetricsExporter(MetricSources(components=lambda: components),
                                   [m for f in features for m in f.metrics], process=False, stats_timeout_s=0.5)
        before = parse(await exporter.render())

        for component in components.values():
            health = component.health
            monkeypatch.setattr(component, "health", renamed(health) if change == "rename every key"
                                else (lambda: {"ok": True}))
        after = parse(await exporter.render())

    assert value(after, "telephonyd_agi_sessions_total", script="call_log", result="QUEUED") == 1
    assert value(after, "telephonyd_ameyo_callbacks_total", result="queued") == 2
    assert value(after, "telephonyd_mqtt_published_total") == 5
    assert value(after, "telephonyd_contacts_resyncs_total") == 1
    assert value(after, "telephonyd_ami_connects_total") == 0
    assert value(after, "telephonyd_outbox_target_enabled", target="tops") == 1
    assert value(after, "telephonyd_metrics_collect_errors_total") == 0
    assert owned(after) == owned(before)
