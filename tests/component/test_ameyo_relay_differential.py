"""Differential test: telephonyd's Ameyo edge against the PHP relay it replaces, on the relay's own outputs.

``tests/fixtures/ameyo-relay/corpus.jsonl`` holds the scenarios of `tests.tools.ameyo_scenarios`
and, for each, the TopS.II requests the relay really sent (run once with php-cli; see the README
there). Here every scenario is replayed over real HTTP against one telephonyd node (real store,
outbox and TopS.II sender) delivering to the fake TopS.II; after its callbacks, phone-1 states are
expired as if ``phone1_state_ttl_s`` had passed. telephonyd's requests must equal the relay's (the
``jsonData`` text byte for byte, times of the arrival instant written ``<received>``), except where
a decision of `ameyo_relay_decisions` applies: then they must equal exactly what that decision
prescribes.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yarl

from tests.component.ameyo_harness import Node, start_node, stop_node
from tests.component.ameyo_relay_decisions import DECISIONS, RECEIVED, NotExplained, Request
from tests.fakes.tops import API_PATH
from tests.helpers import wait_until
from tests.tools.ameyo_scenarios import scenarios

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "ameyo-relay" / "corpus.jsonl"
TOKYO = ZoneInfo("Asia/Tokyo")
STAMP = re.compile(r'"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})"')


def corpus() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_corpus_is_the_generators_output():
    stored = corpus()
    assert len(stored) >= 300
    assert [(s["name"], s["family"], s["callbacks"]) for s in stored] == [
        (s["name"], s["family"], s["callbacks"]) for s in scenarios()]


def test_relay_requests_have_the_wire_format_the_fake_checks():
    for scenario in corpus():
        for r in scenario["relay"]:
            assert (r["method"], r["content_type"], r["form_fields"]) == (
                "POST", "application/x-www-form-urlencoded", ["jsonData"]), scenario["name"]
            assert r["api_key"] == "k" * 32 and r["path"] == API_PATH + r["api"] + ".json"


def _fields(api: str, text: str) -> dict[str, Any]:
    return next(iter(json.loads(text).values()))


def _relay(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """The relay's (api, jsonData text), its clock values replaced by ``<received>`` (from the
    corpus's normalised copy, which the runner made from the run's time window)."""
    out = []
    for r in scenario["relay"]:
        json_data = urllib.parse.parse_qs(r["body"], keep_blank_values=True)["jsonData"][0]
        if json.loads(json_data) != r["json"]:
            json_data = json.dumps(r["json"], separators=(",", ":"))
        out.append((r["api"], json_data))
    return out


class Replay:
    def __init__(self, node: Node, fake) -> None:
        self.node = node
        self.fake = fake

    async def settled(self) -> None:
        async def idle() -> bool:
            counts = (await self.node.outbox.queries.open_counts()).get("tops", {})
            return not counts.get("pending") and not counts.get("in_flight")

        await wait_until(idle, 10.0, "the outbox to deliver")

    async def run(self, scenario: dict[str, Any]) -> tuple[list[tuple[str, str]], list[int]]:
        first = len(self.fake.received)
        lo = (datetime.now(TOKYO) - timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S")
        statuses = []
        for cb in scenario["callbacks"]:
            query = cb["raw_query"] if "raw_query" in cb else urllib.parse.urlencode([tuple(p) for p in cb["query"]])
            url = yarl.URL(self.node.base_url + cb["path"] + "?" + query, encoded=True)
            async with self.node.session.get(url) as resp:
                statuses.append(resp.status)
                await resp.read()
            await self.settled()
        service = self.node.service
        settings = service.recorder.settings
        service.recorder.settings = replace(settings, phone1_ttl_s=0.0)
        try:
            await service.sweep()
        finally:
            service.recorder.settings = settings
        await self.settled()
        hi = (datetime.now(TOKYO) + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S")
        sent = []
        for r in self.fake.received[first:]:
            text = STAMP.sub(lambda m: f'"{RECEIVED}"' if lo <= m.group(1) <= hi else m.group(0), r.json_data)
            sent.append((r.api, text))
        return sent, statuses


def classify(scenario: dict[str, Any], relay: list[tuple[str, str]], ours: list[tuple[str, str]]) -> tuple[str, list[str], str]:
    """("identical" | "decided" | "different", decisions applied, explanation)."""
    if ours == relay:
        return "identical", [], ""
    expected: list[Request] = [(api, _fields(api, text)) for api, text in relay]
    applied = []
    try:
        for decision in DECISIONS:
            out = decision.apply(scenario, expected)
            if out is not None:
                expected, applied = out, [*applied, decision.name]
    except NotExplained as exc:
        return "different", applied, f"not explained by {applied + [decision.name]}: {exc}"
    got = [(api, _fields(api, text)) for api, text in ours]
    if applied and [(a, list(f.items())) for a, f in got] == [(a, list(f.items())) for a, f in expected]:
        return "decided", applied, ""
    return "different", applied, f"expected {expected}"


async def test_telephonyd_sends_what_the_relay_sent_except_the_decided(fake_tops, sqlite_url, capsys):
    node = await start_node(sqlite_url, fake_tops)
    replay = Replay(node, fake_tops)
    results: dict[str, Counter[str]] = {"identical": Counter(), "decided": Counter(), "different": Counter()}
    remaining = []
    try:
        for scenario in corpus():
            ours, statuses = await replay.run(scenario)
            assert set(statuses) <= {200, 400}, (scenario["name"], statuses)
            relay = _relay(scenario)
            verdict, applied, why = classify(scenario, relay, ours)
            results[verdict]["+".join(applied) or scenario["family"]] += 1
            if verdict == "different":
                remaining.append(f"{scenario['name']}: relay {relay} telephonyd {ours} ({why})")
        assert fake_tops.violations == []
    finally:
        await stop_node(node)
    with capsys.disabled():
        print("\nAmeyo differential:", {k: sum(v.values()) for k, v in results.items()})
        for name, n in sorted(results["decided"].items()):
            print(f"  decided {name}: {n}")
    assert remaining == [], "\n".join(remaining)
    used = {name for key in results["decided"] for name in key.split("+")}
    assert used == {d.name for d in DECISIONS}, "a decision no scenario exercises is not tested"
