"""HERO's Faust app: the command processor and the usage aggregation as Faust agents.

``python -m streams commands`` runs the command agent in a worker process of its own;
``python -m streams usage`` runs the usage agent when ``HERO_USAGE_RUNNER=faust`` (by default
it runs the plain consumer loop, ``streams._usage_plain``: no Faust agent reads a topic at
half a plain consumer's rate, ``benchmarks/faust_ceiling.py``).
The app is the same for both; a worker installs its one agent, and the app's id, which
Faust uses as the consumer group, is the agent's group (``hero-usage``, ``hero-commands``).
Configured from ``HeroSettings``: the broker from ``HERO_KAFKA_BOOTSTRAP``, data under the
stack's data dir, no web server (the worker is started without one: nothing listens).

Nothing in it needs what the embedded broker lacks (DESIGN.md): no tables (the usage
windows live in Valkey; a table's changelog restore trusts end offsets the embedded broker
reports wrong), no transactions, no idempotent producer, no leader topic. The same code runs
on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import faust

from hero.config import HeroSettings
from streams._faust import STOP_GRACE_S, exit_after, new_app
from streams._usage_agent import UsageAgent
from streams.commands import CommandsAgent

__all__ = ["ROLES", "CommandsAgent", "Role", "UsageAgent", "build", "run_worker"]

Role = Literal["usage", "commands"]
ROLES: tuple[Role, ...] = ("usage", "commands")


def build(
    settings: HeroSettings,
    role: Role,
    *,
    loop: asyncio.AbstractEventLoop,
    group: str | None = None,
    namespace: str = "usage",
    name: str | None = None,
) -> tuple[faust.App, UsageAgent | CommandsAgent]:
    """The app with ``role``'s agent installed, and that agent's state."""
    group = group or f"hero-{role}"
    name = name or role
    app = new_app(settings, group=group, name=name, loop=loop)
    agent: UsageAgent | CommandsAgent
    if role == "usage":
        agent = UsageAgent(settings, group=group, namespace=namespace, name=name)
    else:
        agent = CommandsAgent(settings, group=group, name=name)
    agent.install(app)
    return app, agent


class _BoundedStopWorker(faust.Worker):
    """Faust's worker whose stop ends within ``STOP_GRACE_S``, whatever it waits on."""

    async def on_stop(self) -> None:
        exit_after(STOP_GRACE_S)
        await super().on_stop()


def run_worker(
    settings: HeroSettings,
    role: Role,
    *,
    group: str | None = None,
    namespace: str = "usage",
    name: str | None = None,
) -> None:
    """Run ``role``'s worker until SIGTERM or SIGINT (Faust's worker stops on both; the
    process is gone ``STOP_GRACE_S`` later at the latest)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, agent = build(settings, role, loop=loop, group=group, namespace=namespace, name=name)
    loop.run_until_complete(agent.start())
    worker = _BoundedStopWorker(
        app,
        loop=loop,
        loglevel=logging.INFO,
        quiet=True,
        redirect_stdouts=False,
        # Without a web server: Faust binds its port when the worker is started with one,
        # even with web_enabled off (DESIGN.md).
    )
    worker.execute_from_commandline()
