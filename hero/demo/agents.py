"""Who runs the demo's agents: the stack's agent hosts on Ray, a cluster the demo starts
for a stack that runs none, or the agents in this process between polls.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from hero.demo.scaling import KafkaTelemetry, Samples
from hero.domain.clock import SystemClock
from hero.store import EventStore
from infra import LocalStack

if TYPE_CHECKING:
    from hero.config import HeroSettings
    from infra import Endpoints

__all__ = ["Agents", "ClusterAgents", "LocalAgents", "StackAgents", "ray_agents"]


class Agents(Protocol):
    description: str

    def start(self) -> None: ...

    def step(self) -> None: ...

    def sample(self, samples: Samples, at: datetime) -> None:
        """Deliver replicas' telemetry (utilization samples) as the agents get it."""

    def stop(self) -> None: ...


class StackAgents:
    """The agent hosts ``hero up`` started on the stack's Ray: they run by themselves, and
    read samples from the stack's Kafka."""

    def __init__(self, shards: int, kafka_bootstrap: str):
        self.description = f"{shards} agent hosts on Ray"
        self._telemetry = KafkaTelemetry(kafka_bootstrap)

    def start(self) -> None:
        """Already running, and caught up: ``hero up`` waits for it."""

    def step(self) -> None:
        """The hosts run by themselves."""

    def sample(self, samples: Samples, at: datetime) -> None:
        self._telemetry.send(samples, at)

    def stop(self) -> None:
        """The hosts belong to the stack; the demo's producer does not."""
        self._telemetry.close()


class ClusterAgents(StackAgents):
    """Agent hosts on Ray started for the demo, for a stack that runs none."""

    def __init__(self, settings: HeroSettings, endpoints: Endpoints, shards: int, tag: str):
        from agents.runtime.cluster import AgentCluster

        super().__init__(shards, endpoints.kafka_bootstrap)
        self._cluster = AgentCluster(
            settings, endpoints, shards=shards, name_prefix=f"hero-demo-{tag}"
        )

    def start(self) -> None:
        self._cluster.start()
        self._cluster.wait_caught_up(timeout_s=60)

    def stop(self) -> None:
        super().stop()
        self._cluster.stop()


class LocalAgents:
    """The agents in this process, stepped between polls (``agents.local.LocalMarket``)."""

    def __init__(self, store: EventStore):
        from agents.local import LocalMarket

        self.description = "agents in this process"
        self._market = LocalMarket(store, SystemClock())

    def start(self) -> None:
        self._market.catch_up()

    def step(self) -> None:
        self._market.step()

    def sample(self, samples: Samples, at: datetime) -> None:
        self._market.sample(samples, at)

    def stop(self) -> None:
        """Nothing runs in the background."""


def ray_agents(stack: LocalStack, settings: HeroSettings, tag: str) -> Agents:
    """The stack's agent hosts when it runs them, else a cluster of the demo's own."""
    running = {c.name: c.state for c in stack.status()}
    if running.get("agents") == "up":
        return StackAgents(settings.agent_shards, stack.endpoints().kafka_bootstrap)
    return ClusterAgents(settings, stack.endpoints(), settings.agent_shards, tag)
