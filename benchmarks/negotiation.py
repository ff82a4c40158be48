"""Negotiation throughput on the embedded stack: agents on Ray, events through Kafka.

    ./run bench-negotiation [--farms 1000] [--offtakers 100] [--replicas 10] [--shards 2]
                            [--rate 250] [--synchronous full|normal]

Starts its own stack in a temporary directory (broker, Valkey, Ray, relay, agent hosts),
registers ``--farms`` farms of one node each with auto-accept policies for each of two
phases (a region per phase, so each phase meets a fresh market), lets the agent hosts catch
up, then runs the phases with ``--offtakers`` new offtakers each, a mandate of ``--replicas``
replicas apiece: *burst* sets every mandate at once (the peak throughput, and the latency of
a queue of all of them), *paced* sets them so that ``--rate`` replicas per second are asked
for (the latency at that throughput). Figures come from the store's recorded times:
contracts per second, RFQ-to-contract latency (p50, p99), mandate-to-RFQ latency, agents per
host and memory per agent. The burst then runs in one process (agents fed straight from a
SQLite store, no Kafka, no Ray) as the baseline of the same run.
Goals: >= 200 contracts/s, p99 <= 1 s, >= 10,000 agents per host at <= 20 KB each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

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
    ContractCreated,
    FarmerPolicy,
    Mandate,
    Money,
    OfftakerMandateSet,
    RegisterFarm,
    RegisterNode,
    Resources,
    RfqIssued,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
)

PHASES = ("burst", "paced")
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

    def poll(self) -> int:
        while rows := self.store.read_all(self.position + 1, 5000):
            for row in rows:
                self.position = row.position
                if row.type in ("RfqIssued", "ContractCreated", "OfftakerMandateSet"):
                    envelope = row.envelope()
                    event = envelope.decode()
                    if not event.offtaker_id.startswith(self.prefix):  # type: ignore[attr-defined]
                        continue
                    if isinstance(event, OfftakerMandateSet):
                        self.mandates[event.offtaker_id] = envelope.recorded_at
                    elif isinstance(event, RfqIssued):
                        self.rfqs[event.negotiation_id] = envelope.recorded_at
                        self.first_rfq.setdefault(event.offtaker_id, envelope.recorded_at)
                    elif isinstance(event, ContractCreated):
                        self.contracts.append((event.negotiation_id, envelope.recorded_at))
        return len(self.contracts)

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
    wait(lambda: watch.poll() >= wanted, args.timeout, f"{wanted} contracts ({name})")
    figures = watch.figures()
    figures["offered_per_s"] = wanted / offered_s if interval else float("inf")
    return figures


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


def run_stack(
    args: argparse.Namespace, tmp: Path
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    import ray

    store_url = f"sqlite:///{tmp / 'stack' / 'events.db'}?synchronous={args.synchronous}"
    settings = HeroSettings(data_dir=tmp / "stack", agent_shards=args.shards, store_url=store_url)
    stack = LocalStack(settings)
    report = stack.up()
    print(f"stack healthy in {report.seconds:.1f} s")
    try:
        endpoints = stack.endpoints()
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
        hosts = {"after_phases": _host_figures(stats())}
        if args.agents_per_host:
            grow_hosts(service, store, args, stats)
            hosts["grown"] = _host_figures(stats())
        return phases, hosts
    finally:
        ray.shutdown()  # before the stack's Ray goes, or the driver hangs on exit
        stack.down()


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
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--agents-per-host",
        type=int,
        default=10_000,
        help="then grow the hosts to this many agents each (0: skip)",
    )
    parser.add_argument("--keep", default="", help="run in this directory and keep its store")
    parser.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="the SQLite store's commit durability (see README)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hero-nego-") as name:
        tmp = Path(args.keep) if args.keep else Path(name)
        phases, hosts = run_stack(args, tmp)
        baseline = run_in_process(args, tmp)
    agents, per_agent = memory_per_agent(args.agents_per_host)

    print(
        f"farmers: {args.farms}, offtakers: {args.offtakers} x {args.replicas} replicas per "
        f"phase, hosts: {args.shards}, store synchronous={args.synchronous}"
    )
    print(_line("stack, burst (all at once)", phases["burst"]))
    print(_line(f"stack, paced ({args.rate:g} replicas/s)", phases["paced"]))
    print(f"{'':28} (asked for at {phases['paced']['offered_per_s']:.1f} replicas/s on average)")
    for name, f in phases.items():
        print(
            f"{name}: {f['rfqs']:.0f} RFQs for {args.offtakers} mandates; the last RFQ "
            f"{f['last_rfq_after_last_mandate_s']:.2f} s after the last mandate"
        )
    print(_line("in-process baseline, burst", baseline))
    ratio = phases["burst"]["contracts_per_s"] / baseline["contracts_per_s"]
    print(
        f"ratio stack/baseline contracts/s (burst): {ratio:.2f} "
        "(goals: >= 200 contracts/s, p99 <= 1 s)"
    )
    if "grown" in hosts:
        before, after = hosts["after_phases"], hosts["grown"]
        added = sum(after["agents"]) - sum(before["agents"])
        grown = sum(after["rss_bytes"]) - sum(before["rss_bytes"])
        print(
            f"host RSS grew {grown / 2**20:.0f} MiB for {added} more agents: "
            f"{grown / max(added, 1) / 1024:.1f} KiB per agent, market view included "
            "(goal <= 20 KB)"
        )
    for label, figures in hosts.items():
        print(
            f"agents per host on the stack ({label.replace('_', ' ')}): {figures['agents']}, "
            f"memory per agent (host estimate): "
            f"{[round(m / 1024, 1) for m in figures['memory_per_agent_bytes']]} KiB, host RSS "
            f"{[round(r / 2**20) for r in figures['rss_bytes']]} MiB"
        )
    print(
        f"one agent set with {agents} agents: {per_agent / 1024:.1f} KiB per agent "
        f"incl. the market view (goal >= 10,000 agents at <= 20 KiB; ratio "
        f"{per_agent / 20480:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
