"""``hero demo``'s scaling act: one autoscaled workload through a spike and a node failure.

A spike: every live replica of the demo's autoscaled workload reports its cores 95 % busy, at
"now" in sample time. The autoscaler (HPA's rules, on the samples' clock) records a
``ScaleDecided``; the offtaker negotiates the replicas it adds and places them across both
grids (each placement recorded with its scores). A node failure: the node of one of its
replicas goes down; the offtaker contracts a new home first (``ReplicaMigrated``), then ends
the old contract, which records its SLA outcome (``SlaOutcomeRecorded``). The node is brought
back up afterwards, so the fleet is whole for the next run. The hourly bills that follow (and
the penalty's refund) are the demo's billing, which bills the contracts this act added too.

The samples travel as a replica's telemetry does: on Kafka (``hero.utilization``) to the
agents on Ray, straight into the agents in this process with ``--in-process``. They are not
in the store; the decisions, contracts and moves are, and the act polls the store for them
(:mod:`hero.readmodels.workloads`) as ``settle`` does, with the same timeout. What it found,
and how that is told, is :mod:`hero.demo.scaling_report`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Protocol

from hero.cli.market import load_report
from hero.cli.workloads import fmt_autoscale, fmt_grids
from hero.demo.scaling_report import Failure, Scaling, Spike, percent, seconds_of
from hero.market.service import CommandRejected, MarketService, scaling_stream
from hero.market.views import ContractRow, MarketReport
from hero.readmodels.workloads import (
    DecisionRow,
    MigrationRow,
    ReplicaRow,
    SlaRow,
    WorkloadRow,
    WorkloadsView,
    read_workloads,
)
from hero.store import EventStore
from schemas import (
    ChangeNodeStatus,
    Money,
    NodeStatus,
    ScaleDecided,
    UtilizationSampled,
    WorkloadSpec,
)

if TYPE_CHECKING:
    from hero.log.telemetry import TelemetryPublisher

__all__ = [
    "SPIKE_CPU",
    "KafkaTelemetry",
    "Telemetry",
    "pick_failing_node",
    "run_scaling",
    "spike_samples",
]

#: What every replica reports in the spike: its reserved cores 95 % busy.
SPIKE_CPU = Decimal("0.95")
POLL_S = 0.05
#: How long the failed node stays down at most for other workloads' replicas to move off it.
OTHERS_WAIT_S = 10.0

Samples = Sequence[tuple[UtilizationSampled, int]]


class Telemetry(Protocol):
    """What the act needs of the demo's agents: deliver samples, and run (when in-process)."""

    def sample(self, samples: Samples, at: datetime) -> None: ...

    def step(self) -> None: ...


class KafkaTelemetry:
    """Samples to the stack's Kafka (``hero.utilization``), where the agents on Ray read them.
    One producer on one event loop of its own, kept between sends; ``close`` ends both."""

    def __init__(self, bootstrap: str):
        self._bootstrap = bootstrap
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: TelemetryPublisher | None = None

    def send(self, samples: Samples, at: datetime) -> None:
        """Returns once the broker has them; an empty batch only connects."""
        from hero.log.telemetry import TelemetryPublisher

        if self._loop is None or self._publisher is None:
            self._loop = asyncio.new_event_loop()
            self._publisher = TelemetryPublisher(self._bootstrap, actor="demo")
        self._loop.run_until_complete(self._publisher.send(samples, at))

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            if self._publisher is not None:
                self._loop.run_until_complete(self._publisher.close())
        finally:
            self._loop.close()
            self._loop = self._publisher = None


# -- the act --------------------------------------------------------------------------------------


def spike_samples(
    replicas: Iterable[ReplicaRow], workload_id: str, at: datetime, cpu: Decimal = SPIKE_CPU
) -> list[tuple[UtilizationSampled, int]]:
    """One sample per replica at ``at``; its sequence (the telemetry stream's version) is the
    time in milliseconds, so a later run's samples are never taken for repeats."""
    sequence = int(at.timestamp() * 1000)
    return [
        (
            UtilizationSampled(
                sample_id=f"{replica.contract_id}.{sequence}",
                workload_id=workload_id,
                replica_id=replica.replica_id,
                contract_id=replica.contract_id,
                node_id=replica.node_id,
                cpu=cpu,
                memory=Decimal("0.5"),
                disk=Decimal("0.1"),
                network_bytes=1_000_000,
                requests=1500,
                sampled_at=at,
            ),
            sequence,
        )
        for replica in replicas
    ]


def pick_failing_node(
    replicas: Iterable[ReplicaRow], live: Iterable[ContractRow], terms: dict[str, ContractRow]
) -> ReplicaRow:
    """The replica whose node fails: on the node with the fewest live contracts (of anyone:
    the failure should move this workload's replica, not other workloads' too), then one whose
    SLA refunds a share (so the outcome has a penalty to pay), then the oldest, then by id."""
    on_node = Counter(c.node_id for c in live)

    def rank(replica: ReplicaRow) -> tuple[int, bool, datetime, str]:
        sla = terms[replica.contract_id].sla if replica.contract_id in terms else None
        refunds = sla is not None and sla.penalty_pct > 0
        return (on_node[replica.node_id], not refunds, replica.started_at, replica.contract_id)

    return min(replicas, key=rank)


class _Act:
    """The store followed forward while the market runs: the report (for the contracts to
    bill and the offers to approve) and the workloads view."""

    def __init__(
        self,
        store: EventStore,
        agents: Telemetry,
        scaling: Scaling,
        offtakers: set[str],
        approve: Callable[[MarketReport], object],
        timeout_s: float,
    ):
        self.store, self.agents, self.scaling = store, agents, scaling
        self.offtakers, self.approve, self.timeout_s = offtakers, approve, timeout_s
        self.report = load_report(store)
        self.view = read_workloads(store, view=WorkloadsView())
        self._seen()

    def _seen(self) -> None:
        self.scaling.contracts.update(
            {c.contract_id: c for c in self.report.contracts if c.offtaker_id in self.offtakers}
        )

    def poll(self) -> None:
        self.agents.step()
        load_report(self.store, self.report)
        read_workloads(self.store, view=self.view)
        self._seen()
        self.approve(self.report)

    def row(self) -> WorkloadRow:
        row = self.view.workload(self.scaling.offtaker_id, self.scaling.spec.workload_id)
        assert row is not None, "the mandate was set before the act"
        return row

    def until(self, condition: Callable[[], bool], timeout_s: float | None = None) -> bool:
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            self.poll()
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    def decided_ms(self, after: datetime, sent: datetime) -> int:
        """Milliseconds from ``sent`` to the commit of the first decision made on samples of
        ``after`` or later."""
        stream = scaling_stream(self.scaling.offtaker_id, self.scaling.spec.workload_id)
        for recorded in self.store.read_stream(stream):
            envelope = recorded.envelope()
            event = envelope.decode()
            if isinstance(event, ScaleDecided) and event.decided_at >= after:
                return max(0, round((envelope.recorded_at - sent).total_seconds() * 1000))
        return 0


def run_scaling(
    store: EventStore,
    agents: Telemetry,
    *,
    tag: str,
    offtaker_id: str,
    spec: WorkloadSpec,
    offtakers: set[str],
    contracts: Iterable[ContractRow],
    approve: Callable[[MarketReport], object],
    timeout_s: float,
    say: Callable[[str], None],
) -> Scaling:
    """The spike, then the node failure; each waits at most ``timeout_s``. A part that does
    not happen in time is named in ``problem`` (and the node failure is skipped after a spike
    that failed)."""
    began = time.monotonic()
    scaling = Scaling(offtaker_id, spec, {c.contract_id: c for c in contracts})
    act = _Act(store, agents, scaling, offtakers, approve, timeout_s)
    scaling.spike = _spike(act, say)
    if scaling.spike is not None:
        scaling.failure = _fail_a_node(act, tag, say)
    scaling.seconds = time.monotonic() - began
    return scaling


def _spike(act: _Act, say: Callable[[str], None]) -> Spike | None:
    scaling, spec = act.scaling, act.scaling.spec
    act.poll()
    before = act.row()
    say(
        f"[bold]scaling[/] {scaling.ref} (autoscale {fmt_autoscale(spec.autoscale)}) runs "
        f"{len(before.live)} replicas ({fmt_grids(before)}); spike: each reports cpu {SPIKE_CPU}"
    )
    # An empty batch first: it connects the producer, so what is timed is the spike itself.
    act.agents.sample([], datetime.now(UTC))
    at = datetime.now(UTC)
    samples = spike_samples(before.live, spec.workload_id, at)
    started = time.monotonic()
    act.agents.sample(samples, at)
    known = {r.contract_id for r in before.live}

    def decided() -> DecisionRow | None:
        return next((d for d in act.row().decisions if d.decided_at >= at), None)

    if not act.until(lambda: decided() is not None):
        scaling.problem = f"no scale decision for {scaling.ref} within {act.timeout_s:g} s"
        return None
    decision = decided()
    assert decision is not None
    decision_ms = act.decided_ms(after=at, sent=at)
    if decision.desired_replicas <= decision.current_replicas:
        scaling.problem = (
            f"the spike did not scale {scaling.ref} up: {decision.reason} "
            f"({decision.current_replicas} → {decision.desired_replicas})"
        )
        return None
    say(
        f"  autoscaler: [bold]{decision.reason}[/] {decision.current_replicas} → "
        f"{decision.desired_replicas} ({decision.metric} {_plain(decision.value)} / target "
        f"{_plain(decision.target)}), {decision_ms} ms after the spike"
    )
    if not act.until(lambda: len(act.row().live) >= decision.desired_replicas):
        scaling.problem = (
            f"{scaling.ref} has {len(act.row().live)} of the {decision.desired_replicas} "
            f"replicas decided after {act.timeout_s:g} s"
        )
        return None
    contracted_s = time.monotonic() - started
    row = act.row()
    added = tuple(r for r in row.live if r.contract_id not in known)
    placed = ", ".join(
        f"{r.node_id} ({r.farm_id}, {r.grid.value}) score {_score(r)}" for r in added
    )
    verdict = "" if len(row.grids) > 1 else " [yellow](one grid only)[/]"
    say(
        f"  replicas: {fmt_grids(row)}{verdict}, {len(added)} new in {contracted_s:.1f} s: {placed}"
    )
    return Spike(decision, decision_ms, contracted_s, row.grids, added)


def _fail_a_node(act: _Act, tag: str, say: Callable[[str], None]) -> Failure | None:
    scaling = act.scaling
    victim = pick_failing_node(act.row().live, act.report.contracts, scaling.contracts)
    node_id, farm_id = victim.node_id, victim.farm_id
    service = MarketService(act.store, actor="demo")
    down_at = datetime.now(UTC)
    started = time.monotonic()
    service.handle(
        ChangeNodeStatus(
            command_id=f"demo-{tag}.{node_id}.down",
            node_id=node_id,
            status=NodeStatus.DOWN,
            reason="demo: node failure",
        )
    )
    say(
        f"[bold]node failure[/] {node_id} ({farm_id}, {victim.grid.value}) goes down with "
        f"replica {victim.contract_id}"
    )

    def moved() -> MigrationRow | None:
        return next(
            (m for m in act.row().migrations if m.from_contract_id == victim.contract_id), None
        )

    def judged() -> SlaRow | None:
        ended = next((r for r in act.row().ended if r.contract_id == victim.contract_id), None)
        return ended.sla if ended is not None else None

    def emptied() -> bool:
        return not any(c.node_id == node_id for c in act.report.contracts)

    try:
        if not act.until(lambda: moved() is not None and judged() is not None):
            what = "migrated" if moved() is None else "ended with its SLA outcome"
            scaling.problem = f"the replica on {node_id} was not {what} within {act.timeout_s:g} s"
            return None
        # Whatever else ran there moves too; the node comes back once it is empty, so that
        # no replacement finds the replica it replaces healthy again.
        act.until(emptied, min(act.timeout_s, OTHERS_WAIT_S))
    finally:
        back_up = _node_up(service, tag, node_id)
    migration, sla = moved(), judged()
    assert migration is not None
    assert sla is not None
    others = tuple(
        m
        for row in act.view.workloads
        for m in row.migrations
        if m.from_node_id == node_id
        and m.moved_at >= down_at
        and m.from_contract_id != migration.from_contract_id
    )
    moved_s = max((migration.moved_at - down_at).total_seconds(), 0.0)
    to = next((r for r in act.row().live if r.contract_id == migration.to_contract_id), None)
    where = f" ({to.farm_id}, {to.grid.value})" if to is not None else ""
    say(
        f"  moved {migration.from_node_id} → {migration.to_node_id}{where}: the new contract "
        f"{moved_s:.1f} s after the failure, then the old one ended "
        f"({time.monotonic() - started:.1f} s)"
    )
    if others:
        say(f"  also moved off {node_id}: {len(others)} other replicas")
    verdict = "[green]met[/]" if sla.met else "[red]not met[/]"
    say(
        f"  SLA of the ended contract: down {seconds_of(sla.hours_down)} s of its "
        f"{seconds_of(sla.period_hours)} s, uptime {percent(sla.uptime_pct)} % against "
        f"{_plain(sla.promised_pct)} %: {verdict}, penalty {_usd(sla.penalty)}"
        + (f"; {node_id} back up" if back_up else "")
    )
    return Failure(node_id, farm_id, migration, to, sla, moved_s, back_up, others)


def _node_up(service: MarketService, tag: str, node_id: str) -> bool:
    """The node repaired: the next run (and other offtakers) find the fleet whole."""
    try:
        service.handle(
            ChangeNodeStatus(
                command_id=f"demo-{tag}.{node_id}.up",
                node_id=node_id,
                status=NodeStatus.UP,
                reason="demo: repaired",
            )
        )
    except CommandRejected:  # told in the outcome; the node stays down
        return False
    return True


def _plain(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def _usd(money: Money) -> str:
    return f"{_plain(money.amount)} {money.currency.value}"


def _score(replica: ReplicaRow) -> str:
    total = replica.placement.total if replica.placement is not None else None
    return "-" if total is None else f"{total.quantize(Decimal('0.001'), ROUND_HALF_EVEN):f}"
