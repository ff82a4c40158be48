"""The agent runtime: hosts that feed brains from the log and send their commands.

``AgentHostCore`` (plain asyncio) holds one shard of the agents; ``AgentHost`` is it as a Ray
actor; ``AgentCluster`` starts N of them. Only this package touches Ray (DESIGN.md).
Import ``agents.runtime.actor``/``agents.runtime.cluster`` for the Ray parts: this module
imports neither, so the core stays usable without Ray.

A process: the only package that touches Ray.
See docs/architecture.md for the layers and the flow of one command.
"""

from agents.runtime.feed import Delivery, EventFeed, History, KafkaFeed, StoreHistory
from agents.runtime.host import AgentHostCore, HostOptions, HostStats
from agents.runtime.routing import AGENT_TOPICS, AppliedVersions, kind_of, shard_of
from agents.runtime.sink import CommandSink, SinkFactory, ThreadedSink, market_service_sink

__all__ = [
    "AGENT_TOPICS",
    "AgentHostCore",
    "AppliedVersions",
    "CommandSink",
    "Delivery",
    "EventFeed",
    "History",
    "HostOptions",
    "HostStats",
    "KafkaFeed",
    "SinkFactory",
    "StoreHistory",
    "ThreadedSink",
    "kind_of",
    "market_service_sink",
    "shard_of",
]
