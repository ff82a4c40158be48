"""Negotiation throughput on both stacks: agents on Ray, events through Kafka.

    ./run bench-negotiation [--stacks embedded,production] [--farms 1000] [--offtakers 100]
                            [--replicas 10] [--shards 2] [--rate 250]
                            [--synchronous full|normal] [--quick]

For each stack (embedded: SQLite + Tansu; production: the embedded PostgreSQL + Apache Kafka
4.4), one after the other, starts its own stack in a temporary directory with the project's
launcher (store, broker, Valkey, Ray, relay, agent hosts; ``hero down`` stops it),
registers ``--farms`` farms of one node each with auto-accept policies for each of two
phases (a region per phase, so each phase meets a fresh market), lets the agent hosts catch
up, then runs the phases with ``--offtakers`` new offtakers each, a mandate of ``--replicas``
replicas apiece: *burst* sets every mandate at once (the peak throughput, and the latency of
a queue of all of them), *paced* sets them so that ``--rate`` replicas per second are asked
for (the latency at that throughput). Figures come from the store's recorded times:
contracts per second, RFQ-to-contract latency (p50, p99), mandate-to-RFQ latency, agents per
host and memory per agent. The burst then runs in one process (agents fed straight from a
SQLite store, no Kafka, no Ray) as the baseline of the same run. One table, a column per
stack; the growth to ``--agents-per-host`` runs on the first stack only (the agents' memory
does not depend on the store). ``--quick``: 200 farms, 20 offtakers, no growth.
Goals: >= 200 contracts/s, p99 <= 1 s, >= 10,000 agents per host at <= 20 KB each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import tracemalloc
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from _stacks import LABELS, add_stacks_argument, reachable_dir, table
from aiokafka import AIOKafkaConsumer

from agents.agentset import AgentSet
from agents.local import LocalMarket
from agents.runtime.__main__ import default_name_prefix
from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.market.service import MarketService
from hero.store import EventStore, SqliteEventStore, open_store
from infra import LocalStack, configure_ray_client
from schemas import (
    Command,
    ContractCancelled,
    ContractCreated,
    FarmerPolicy,
    Mandate,
    Money,
    OfferAccepted,
    OfferMade,
    OfftakerMandateSet,
    RegisterFarm,
    RegisterNode,
    Resources,
    RfqIssued,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    Topic,
    WorkloadSpec,
)

PHASES = ("burst", "paced")
_WATCHED = frozenset(
    {
        "RfqIssued",
        "OfferMade",
        "OfferAccepted",
        "ContractCreated",
        "ContractCancelled",
        "OfftakerMandateSet",
    }
)
NODE = Resources.from_gb(cru=64, mru_gb=256, sru_gb=4000)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)


def fleet(farms: int, region: str = "europe") -> list[Command]:
    commands: list[Command] = []
    for i in range(farms):
        farm = f"{region}-farm-{i:05d}"
        price = Money.of(f"0.{20 + i % 20:03d}", "USD")  # 0.020 .. 0.039 USD per CU-hour
        policy = FarmerPolicy(
            price_cu_hour=price,
            price_su_hour=Money.of("0.01", "USD"),
            sla=Sla(uptime_pct=Decimal("99.5")),
        )
        commands += [
            RegisterFarm(
                command_id=f"{farm}:reg",
                farm_id=farm,
                name=farm,
                grid="grid4",
                country="DE",
                region=region,
            ),
            RegisterNode(
                command_id=f"{farm}:node",
                node_id=f"{farm}-n1",
                farm_id=farm,
                grid="grid4",
                country="DE",
                region=region,
                total=NODE,
                uptime_pct=Decimal("99.9"),
            ),
            SetFarmerPolicy(command_id=f"{farm}:policy", farm_id=farm, policy=policy),
        ]
    return commands


def mandates(
    offtakers: int, replicas: int, prefix: str = "acme", region: str = "europe"
) -> list[Command]:
    mandate = Mandate(
        workloads=[
            WorkloadSpec(workload_id="app", resources=REPLICA, replicas=replicas, regions=[region])
        ],
        budget_month=Money.of("100000", "USD"),
        max_price_cu_hour=Money.of("0.05", "USD"),
        offer_window_s=Decimal(5),  # the answer of every invited farm ends the window earlier
        offers_per_replica=1,
    )
    return [
        SetOfftakerMandate(
            command_id=f"{prefix}-{i:04d}:mandate", offtaker_id=f"{prefix}-{i:04d}", mandate=mandate
        )
        for i in range(offtakers)
    ]


class Watch:
    """Follows the store for the RFQs and contracts of offtakers named ``prefix-*``."""

    def __init__(self, store: EventStore, prefix: str = ""):
        self.store, self.position, self.prefix = store, 0, prefix
        self.rfqs: dict[str, datetime] = {}
        self.contracts: list[tuple[str, datetime]] = []
        self.mandates: dict[str, datetime] = {}
        self.first_rfq: dict[str, datetime] = {}
        self.first_offer: dict[str, datetime] = {}
        self.accepted: dict[str, datetime] = {}
        self.contract_ids: set[str] = set()
        self.cancelled: dict[str, int] = {}  # reason -> how many of this phase's contracts

    def poll(self) -> int:
        while rows := self.store.read_all(self.position + 1, 5000):
            for row in rows:
                self.position = row.position
                if row.type in _WATCHED:
                    envelope = row.envelope()
                    self._see(envelope.decode(), envelope.recorded_at)
        return len(self.contracts)

    def _see(self, event: Any, at: datetime) -> None:
        if isinstance(event, ContractCancelled):
            if event.contract_id in self.contract_ids:
                self.cancelled[event.reason] = self.cancelled.get(event.reason, 0) + 1
            return
        if isinstance(event, (OfferMade, OfferAccepted)):
            if event.negotiation_id in self.rfqs:  # RFQs come first in the store
                steps = self.first_offer if isinstance(event, OfferMade) else self.accepted
                steps.setdefault(event.negotiation_id, at)
            return
        if not event.offtaker_id.startswith(self.prefix):
            return
        if isinstance(event, OfftakerMandateSet):
            self.mandates[event.offtaker_id] = at
        elif isinstance(event, RfqIssued):
            self.rfqs[event.negotiation_id] = at
            self.first_rfq.setdefault(event.offtaker_id, at)
        elif isinstance(event, ContractCreated):
            self.contracts.append((event.negotiation_id, at))
            self.contract_ids.add(event.contract_id)

    def steps(self) -> dict[str, float]:
        """Median seconds of each step from RFQ to contract: where the time goes."""
        done = dict(self.contracts)
        chain = [self.rfqs, self.first_offer, self.accepted, done]
        names = ["rfq_to_offer_s", "offer_to_accept_s", "accept_to_contract_s"]
        out = {}
        for name, before, after in zip(names, chain, chain[1:], strict=False):
            gaps = [
                (after[n] - before[n]).total_seconds() for n in done if n in before and n in after
            ]
            out[name] = statistics.median(gaps) if gaps else float("nan")
        return out

    def figures(self) -> dict[str, float]:
        start = min(self.rfqs.values())
        end = max(t for _, t in self.contracts)
        latencies = sorted((t - self.rfqs[n]).total_seconds() for n, t in self.contracts)
        reaction = sorted(
            (t - self.mandates[o]).total_seconds()
            for o, t in self.first_rfq.items()
            if o in self.mandates
        )
        return {
            "start_ts": start.timestamp(),
            "end_ts": end.timestamp(),
            "contracts": len(self.contracts),
            "seconds": (end - start).total_seconds(),
            "contracts_per_s": len(self.contracts) / max((end - start).total_seconds(), 1e-9),
            "p50_s": statistics.median(latencies),
            "p99_s": _p99(latencies),
            "rfqs": len(self.rfqs),
            "last_rfq_after_last_mandate_s": (
                max(self.rfqs.values()) - max(self.mandates.values())
            ).total_seconds(),
            "mandate_to_rfq_p50_s": statistics.median(reaction),
            "mandate_to_rfq_p99_s": _p99(reaction),
            **self.steps(),
        }


def _p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_phase(
    service: MarketService, store: EventStore, args: argparse.Namespace, name: str, rate: float
) -> dict[str, float]:
    """Offtakers named ``<name>-*`` set their mandates all at once (``rate`` 0) or paced so
    that ``rate`` replicas per second are asked for; returns the phase's figures."""
    watch = Watch(store, prefix=f"{name}-")
    watch.poll()
    commands = mandates(args.offtakers, args.replicas, prefix=name, region=f"{name}-region")
    interval = args.replicas / rate if rate > 0 else 0.0
    started, sent = time.monotonic(), 0
    while sent < len(commands):
        # Every mandate due by now goes in one group commit, so waiting for the store's
        # write lock (the agent hosts hold it for their batches) never stretches the schedule.
        due = len(commands) if not interval else int((time.monotonic() - started) / interval) + 1
        with store.group_commit():
            for command in commands[sent:due]:
                service.handle(command, actor="bench")
        sent = max(sent, min(due, len(commands)))
        if sent < len(commands):
            time.sleep(max(0.0, started + sent * interval - time.monotonic()))  # the schedule
    offered_s = time.monotonic() - started
    wanted = args.offtakers * args.replicas
    try:
        wait(lambda: watch.poll() >= wanted, args.timeout, f"{wanted} contracts ({name})")
    except TimeoutError:  # the figures of what was done, marked incomplete, not none at all
        print(f"{name}: {len(watch.contracts)} of {wanted} contracts after {args.timeout:g} s")
        if not watch.contracts:
            raise
    watch.poll()
    figures = watch.figures()
    figures["cancelled"] = sum(watch.cancelled.values())
    if watch.cancelled:
        print(f"{name}: {figures['cancelled']:.0f} of its contracts cancelled: {watch.cancelled}")
    figures["offered_per_s"] = wanted / offered_s if interval else float("inf")
    figures["wanted"] = wanted
    return figures


def add_relay_lags(bootstrap: str, phases: dict[str, dict[str, float]]) -> None:
    """The relay's share of each step: from an event's commit in the store (its recorded_at)
    to the relay's send to the broker (the record's timestamp), for the phase's
    ``hero.reservations`` records. The rest of a step is the agent host's: its Kafka fetch,
    the decision and its own write to the store."""
    lags = asyncio.run(_reservation_lags(bootstrap))
    for figures in phases.values():
        mine = sorted(lag for at, lag in lags if figures["start_ts"] <= at <= figures["end_ts"])
        figures["relay_lag_p50_s"] = statistics.median(mine) if mine else float("nan")
        figures["relay_lag_p99_s"] = _p99(mine) if mine else float("nan")


async def _reservation_lags(bootstrap: str, idle_s: float = 3.0) -> list[tuple[float, float]]:
    """(recorded_at, seconds until the relay sent it) of every record on hero.reservations,
    read until the topic has been quiet for ``idle_s`` (Tansu's end offsets are unreliable)."""
    consumer = AIOKafkaConsumer(
        Topic.RESERVATIONS.value,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[float, float]] = []
    deadline = time.monotonic() + 120
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - quiet_since < idle_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for record in records:
                    recorded = datetime.fromisoformat(json.loads(record.value)["recorded_at"])
                    at = recorded.timestamp()
                    out.append((at, record.timestamp / 1000 - at))
            if batch:
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


def _host_figures(host_stats: list[Any]) -> dict[str, list[int]]:
    return {
        "agents": [s.agents for s in host_stats],
        "memory_per_agent_bytes": [s.memory_per_agent_bytes for s in host_stats],
        "rss_bytes": [s.rss_bytes for s in host_stats],
    }


def grow_hosts(
    service: MarketService, store: EventStore, args: argparse.Namespace, stats: Any
) -> None:
    """Register farms (a region of their own, never asked) until every host holds at least
    ``--agents-per-host`` agents: the hosts' own count and memory estimate, on the stack."""
    have = sum(s.agents for s in stats())
    # Agents are spread by a hash of their id: ask for 5% more than an even spread needs.
    extra = int((args.agents_per_host * args.shards - have) * 1.05) + 100
    commands = fleet(extra, region="scale-region")
    for start in range(0, len(commands), 3000):
        with store.group_commit():
            for command in commands[start : start + 3000]:
                service.handle(command, actor="bench")
    wait(
        lambda: min(s.agents for s in stats()) >= args.agents_per_host,
        600,
        f"every host to hold {args.agents_per_host} agents",
    )


def stack_settings(stack: str, args: argparse.Namespace, tmp: Path) -> HeroSettings:
    """embedded: SQLite (``--synchronous``) + Tansu; production: the embedded PostgreSQL +
    Apache Kafka, both run by ``hero up``'s launcher."""
    data_dir = tmp / f"stack-{stack}"
    if stack == "embedded":
        url = f"sqlite:///{data_dir / 'events.db'}?synchronous={args.synchronous}"
        return HeroSettings(data_dir=data_dir, agent_shards=args.shards, store_url=url)
    return HeroSettings(
        data_dir=data_dir, agent_shards=args.shards, store="postgres", broker="kafka"
    )


def run_stack(
    stack: str, args: argparse.Namespace, tmp: Path, grow: bool
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    import ray

    settings = stack_settings(stack, args, tmp)
    local = LocalStack(settings)
    report = local.up()
    print(f"{LABELS[stack]}: stack healthy in {report.seconds:.1f} s", flush=True)
    store: EventStore | None = None
    try:
        endpoints = local.endpoints()
        store = open_store(endpoints.store_url)
        service = MarketService(store)
        with store.group_commit():
            for name in PHASES:  # each phase has a market of its own: a region of its own
                for command in fleet(args.farms, region=f"{name}-region"):
                    service.handle(command, actor="bench")
        configure_ray_client(endpoints.ray_env)
        ray.init(address=endpoints.ray_address, namespace="hero", log_to_driver=False)
        prefix = default_name_prefix(settings)
        handles = [ray.get_actor(f"{prefix}-{i}", namespace="hero") for i in range(args.shards)]

        def stats() -> list[Any]:
            return ray.get([h.stats.remote() for h in handles])

        def farmers() -> int:
            return sum(s.agents_by_kind.get("farmer", 0) for s in stats())

        wanted = args.farms * len(PHASES)
        wait(lambda: farmers() >= wanted, 300, "agent hosts to adopt every farmer")
        phases = {}
        for name, rate in (("burst", 0.0), ("paced", args.rate)):
            phases[name] = run_phase(service, store, args, name, rate)
        add_relay_lags(endpoints.kafka_bootstrap, phases)
        hosts = {"after_phases": _host_figures(stats())}
        if grow and args.agents_per_host:
            grow_hosts(service, store, args, stats)
            hosts["grown"] = _host_figures(stats())
        return phases, hosts
    finally:
        ray.shutdown()  # before the stack's Ray goes, or the driver hangs on exit
        if store is not None:
            store.close()
        local.down()


def run_in_process(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    clock = SystemClock()
    store = SqliteEventStore(tmp / "baseline.db", clock, args.synchronous.upper())
    market = LocalMarket(store, clock)
    for command in fleet(args.farms, region="burst-region"):
        market.service.handle(command, actor="bench")
    market.catch_up()
    for command in mandates(args.offtakers, args.replicas, prefix="burst", region="burst-region"):
        market.service.handle(command, actor="bench")
    watch = Watch(store, prefix="burst-")
    wanted = args.offtakers * args.replicas
    deadline = time.monotonic() + args.timeout
    while watch.poll() < wanted and time.monotonic() < deadline:
        if market.step() == 0:
            time.sleep(0.01)  # nothing due: let the offer window pass
    return watch.figures()


def memory_per_agent(count: int) -> tuple[int, float]:
    """Bytes per agent for ``count`` farmer agents in one agent set, market view included."""
    from hero.store import MemoryEventStore

    store = MemoryEventStore()
    service = MarketService(store)
    for command in fleet(count):
        service.handle(command)
    rows = store.read_all(1, 10 * count)
    decoded = [(row.envelope(), row.envelope().decode()) for row in rows]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    agents = AgentSet()
    for envelope, event in decoded:
        agents.apply(envelope, event)  # type: ignore[arg-type]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return len(agents.brains), used / max(len(agents.brains), 1)


def _line(label: str, f: dict[str, float]) -> str:
    return (
        f"{label:28} {f['contracts']:>6.0f} contracts in {f['seconds']:6.2f} s: "
        f"{f['contracts_per_s']:7.1f} contracts/s, RFQ->contract p50 "
        f"{f['p50_s'] * 1000:5.0f} ms, p99 {f['p99_s'] * 1000:5.0f} ms; mandate->RFQ p50 "
        f"{f['mandate_to_rfq_p50_s'] * 1000:5.0f} ms, "
        f"p99 {f['mandate_to_rfq_p99_s'] * 1000:5.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--farms", type=int, default=1000)
    parser.add_argument("--offtakers", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--rate",
        type=float,
        default=250,
        help="replicas asked for per second in the paced phase (above the 200/s goal)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds a phase may take to finish"
    )
    parser.add_argument(
        "--agents-per-host",
        type=int,
        default=10_000,
        help="then grow the hosts to this many agents each (0: skip)",
    )
    parser.add_argument("--keep", default="", help="run in this directory and keep its stores")
    parser.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="the SQLite store's commit durability (see README)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200 farms, 20 offtakers x 10 replicas, no growth: a smoke run",
    )
    add_stacks_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.farms, args.offtakers, args.replicas, args.agents_per_host = 200, 20, 10, 0
    for option in ("farms", "offtakers", "replicas", "shards"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    with reachable_dir("hero-nego-") as scratch:
        tmp = Path(args.keep) if args.keep else scratch
        results = {
            stack: run_stack(stack, args, tmp, grow=stack == args.stacks[0])
            for stack in args.stacks
        }
        baseline = run_in_process(args, tmp)
    agents, per_agent = memory_per_agent(args.agents_per_host or 1000)
    print_report(args, results, baseline, agents, per_agent)


def phase_rows(
    results: dict[str, tuple[dict[str, dict[str, float]], dict[str, Any]]],
    baseline: dict[str, float],
) -> list[tuple[str, list[str]]]:
    def cells(phase: str, pick: Any) -> list[str]:
        return [pick(phases[phase]) for phases, _ in results.values()]

    def ms(value: float) -> str:
        return f"{value * 1000:,.0f} ms"

    rows: list[tuple[str, list[str]]] = []
    for phase in PHASES:
        rows += [
            (
                f"{phase}: contracts made / wanted",
                cells(phase, lambda f: f"{f['contracts']:.0f} / {f['wanted']:.0f}"),
            ),
            (
                f"{phase}: of those, cancelled since",
                cells(phase, lambda f: f"{f['cancelled']:.0f}"),
            ),
            (
                f"{phase}: contracts/s",
                cells(
                    phase,
                    lambda f: (
                        f"{f['contracts_per_s']:.1f} ({f['contracts']:.0f} in {f['seconds']:.2f} s)"
                    ),
                ),
            ),
            (f"{phase}: RFQ->contract p50", cells(phase, lambda f: ms(f["p50_s"]))),
            (f"{phase}: RFQ->contract p99", cells(phase, lambda f: ms(f["p99_s"]))),
            (f"{phase}: mandate->RFQ p50", cells(phase, lambda f: ms(f["mandate_to_rfq_p50_s"]))),
            (f"{phase}: mandate->RFQ p99", cells(phase, lambda f: ms(f["mandate_to_rfq_p99_s"]))),
            (f"{phase}: RFQ->first offer p50", cells(phase, lambda f: ms(f["rfq_to_offer_s"]))),
            (
                f"{phase}: first offer->accepted p50",
                cells(phase, lambda f: ms(f["offer_to_accept_s"])),
            ),
            (
                f"{phase}: accepted->contract p50",
                cells(phase, lambda f: ms(f["accept_to_contract_s"])),
            ),
            (
                f"{phase}: relay's share: commit->send p50",
                cells(phase, lambda f: ms(f["relay_lag_p50_s"])),
            ),
            (
                f"{phase}: relay's share: commit->send p99",
                cells(phase, lambda f: ms(f["relay_lag_p99_s"])),
            ),
            (
                f"{phase}: last RFQ after last mandate",
                cells(phase, lambda f: f"{f['last_rfq_after_last_mandate_s']:.2f} s"),
            ),
        ]
    rows.append(
        ("paced: asked for, replicas/s", cells("paced", lambda f: f"{f['offered_per_s']:.1f}"))
    )
    rows.append(
        (
            "burst: ratio to in-process baseline",
            cells("burst", lambda f: f"{f['contracts_per_s'] / baseline['contracts_per_s']:.2f}"),
        )
    )
    met = [
        "met"
        if phases["burst"]["contracts_per_s"] >= 200
        and phases["paced"]["p99_s"] <= 1.0
        and all(f["contracts"] == f["wanted"] for f in phases.values())
        else "NOT met"
        for phases, _ in results.values()
    ]
    rows.append(("goal >= 200 contracts/s, paced p99 <= 1 s", met))
    rows.append(
        (
            "agents per host (after the phases)",
            [str(hosts["after_phases"]["agents"]) for _, hosts in results.values()],
        )
    )
    return rows


def print_report(
    args: argparse.Namespace,
    results: dict[str, tuple[dict[str, dict[str, float]], dict[str, Any]]],
    baseline: dict[str, float],
    agents: int,
    per_agent: float,
) -> None:
    print(
        f"negotiation: farmers {args.farms}, offtakers {args.offtakers} x {args.replicas} "
        f"replicas per phase, hosts {args.shards}, paced at {args.rate:g} replicas/s, SQLite "
        f"synchronous={args.synchronous}"
    )
    print(table(phase_rows(results, baseline), list(results)))
    print(_line("in-process baseline, burst", baseline))
    for stack, (_, hosts) in results.items():
        if "grown" not in hosts:
            continue
        before, after = hosts["after_phases"], hosts["grown"]
        added = sum(after["agents"]) - sum(before["agents"])
        grown = sum(after["rss_bytes"]) - sum(before["rss_bytes"])
        print(
            f"on {LABELS[stack]}: host RSS grew {grown / 2**20:.0f} MiB for {added} more "
            f"agents: {grown / max(added, 1) / 1024:.1f} KiB per agent, market view included "
            "(goal <= 20 KB)"
        )
        for label, figures in hosts.items():
            print(
                f"agents per host ({label.replace('_', ' ')}): {figures['agents']}, memory per "
                f"agent (host estimate): "
                f"{[round(m / 1024, 1) for m in figures['memory_per_agent_bytes']]} KiB, host "
                f"RSS {[round(r / 2**20) for r in figures['rss_bytes']]} MiB"
            )
    print(
        f"one agent set with {agents} agents: {per_agent / 1024:.1f} KiB per agent "
        f"incl. the market view (goal >= 10,000 agents at <= 20 KiB; ratio "
        f"{per_agent / 20480:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
