"""`AgentsSection`: ``telephonyd_agents*`` of one `PresenceService`, read from its agent statuses at
scrape time (the service builds it, `PresenceService.collectors`; its ``health()`` is for ``/status``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..metrics.section import Section, gauge
from .events import AgentStatus


class AgentsSection(Section):
    """``agents()``: the current `AgentStatus` of every endpoint (``state``, ``online``)."""

    def __init__(self, agents: Callable[[], Iterable[AgentStatus]]) -> None:
        self.agents = agents

    def collect(self) -> Iterator[Metric]:
        by_state: dict[str, int] = {}
        online = 0
        for agent in self.agents():
            state = str(agent.state or "unknown")
            by_state[state] = by_state.get(state, 0) + 1
            online += 1 if agent.online else 0
        family = GaugeMetricFamily("telephonyd_agents", "Agents (endpoints) by presence state", labels=["state"])
        for state, n in sorted(by_state.items()):
            family.add_metric([state], n)
        yield family
        yield gauge("telephonyd_agents_online", "Agents with a reachable contact", online)
