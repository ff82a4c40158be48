"""Negotiation throughput on the embedded stack: agents on Ray, events through Kafka.

    ./run bench-negotiation [--farms 1000] [--offtakers 100] [--replicas 10] [--shards 2]
                            [--rate 200] [--synchronous full|normal]

Starts its own stack in a temporary directory (broker, Valkey, Ray, relay, agent hosts),
registers ``--farms`` farms of one node each with auto-accept policies, lets the agent hosts
catch up, then runs two phases with ``--offtakers`` new offtakers each, a mandate of
``--replicas`` replicas apiece: *burst* sets every mandate at once (the peak throughput, and
the latency of a queue of all of them), *paced* sets them so that ``--rate`` replicas per
second are asked for (the latency at that throughput). Figures come from the store's
recorded times: contracts per second, RFQ-to-contract latency (p50, p99), agents per host
and memory per agent. The same market then runs in one process
(agents fed straight from a SQLite store, no Kafka, no Ray) as the baseline of the same run.
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
    RegisterFarm,
    RegisterNode,
    Resources,
    RfqIssued,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
)

NODE = Resources.from_gb(cru=64, mru_gb=256, sru_gb=4000)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)


def fleet(farms: int) -> list[Command]:
    commands: list[Command] = []
    for i in range(farms):
        farm = f"farm-{i:05d}"
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
                region="europe",
            ),
            RegisterNode(
                command_id=f"{farm}:node",
                node_id=f"{farm}-n1",
                farm_id=farm,
                grid="grid4",
                country="DE",
                region="europe",
                total=NODE,
                uptime_pct=Decimal("99.9"),
            ),
            SetFarmerPolicy(command_id=f"{farm}:policy", farm_id=farm, policy=policy),
        ]
    return commands


def mandates(offtakers: int, replicas: int, prefix: str = "acme") -> list[Command]:
    mandate = Mandate(
        workloads=[WorkloadSpec(workload_id="app", resources=REPLICA, replicas=replicas)],
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

    def poll(self) -> int:
        while rows := self.store.read_all(self.position + 1, 5000):
            for row in rows:
                self.position = row.position
                if row.type in ("RfqIssued", "ContractCreated"):
                    envelope = row.envelope()
                    event = envelope.decode()
                    if not event.offtaker_id.startswith(self.prefix):  # type: ignore[attr-defined]
                        continue
                    if isinstance(event, RfqIssued):
                        self.rfqs[event.negotiation_id] = envelope.recorded_at
                    elif isinstance(event, ContractCreated):
                        self.contracts.append((event.negotiation_id, envelope.recorded_at))
        return len(self.contracts)

    def figures(self) -> dict[str, float]:
        start = min(self.rfqs.values())
        end = max(t for _, t in self.contracts)
        latencies = sorted((t - self.rfqs[n]).total_seconds() for n, t in self.contracts)
        return {
            "contracts": len(self.contracts),
            "seconds": (end - start).total_seconds(),
            "contracts_per_s": len(self.contracts) / max((end - start).total_seconds(), 1e-9),
            "p50_s": statistics.median(latencies),
            "p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        }


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
    interval = args.replicas / rate if rate > 0 else 0.0
    started = time.monotonic()
    for i, command in enumerate(mandates(args.offtakers, args.replicas, prefix=name)):
        if interval:
            pause = started + i * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the arrival schedule itself, not a synchronisation
        service.handle(command, actor="bench")
    wanted = args.offtakers * args.replicas
    wait(lambda: watch.poll() >= wanted, args.timeout, f"{wanted} contracts ({name})")
    return watch.figures()


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
        for command in fleet(args.farms):
            service.handle(command, actor="bench")
        configure_ray_client(endpoints.ray_env)
        ray.init(address=endpoints.ray_address, namespace="hero", log_to_driver=False)
        prefix = default_name_prefix(settings)
        handles = [ray.get_actor(f"{prefix}-{i}", namespace="hero") for i in range(args.shards)]

        def stats() -> list[Any]:
            return ray.get([h.stats.remote() for h in handles])

        def farmers() -> int:
            return sum(s.agents_by_kind.get("farmer", 0) for s in stats())

        wait(lambda: farmers() >= args.farms, 300, "agent hosts to adopt every farmer")
        phases = {}
        for name, rate in (("burst", 0.0), ("paced", args.rate)):
            phases[name] = run_phase(service, store, args, name, rate)
        host_stats = stats()
        per_host = [s.agents for s in host_stats]
        memory = [s.memory_per_agent_bytes for s in host_stats]
        return phases, {"agents_per_host": per_host, "memory_per_agent_bytes": memory}
    finally:
        ray.shutdown()  # before the stack's Ray goes, or the driver hangs on exit
        stack.down()


def run_in_process(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    clock = SystemClock()
    store = SqliteEventStore(tmp / "baseline.db", clock, args.synchronous.upper())
    market = LocalMarket(store, clock)
    for command in fleet(args.farms):
        market.service.handle(command, actor="bench")
    market.catch_up()
    for command in mandates(args.offtakers, args.replicas, prefix="burst"):
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
        f"{f['p50_s'] * 1000:5.0f} ms, p99 {f['p99_s'] * 1000:5.0f} ms"
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
        default=200,
        help="replicas asked for per second in the paced phase (the throughput goal)",
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--agents-per-host", type=int, default=10_000)
    parser.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="the SQLite store's commit durability (see README)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hero-nego-") as name:
        tmp = Path(name)
        phases, hosts = run_stack(args, tmp)
        baseline = run_in_process(args, tmp)
    agents, per_agent = memory_per_agent(args.agents_per_host)

    print(
        f"farmers: {args.farms}, offtakers: {args.offtakers} x {args.replicas} replicas per "
        f"phase, hosts: {args.shards}, store synchronous={args.synchronous}"
    )
    print(_line("stack, burst (all at once)", phases["burst"]))
    print(_line(f"stack, paced ({args.rate:g} replicas/s)", phases["paced"]))
    print(_line("in-process baseline, burst", baseline))
    ratio = phases["burst"]["contracts_per_s"] / baseline["contracts_per_s"]
    print(
        f"ratio stack/baseline contracts/s (burst): {ratio:.2f} "
        "(goals: >= 200 contracts/s, p99 <= 1 s)"
    )
    print(
        f"agents per host on the stack: {hosts['agents_per_host']}, memory per agent "
        f"(host estimate): {[round(m / 1024, 1) for m in hosts['memory_per_agent_bytes']]} KiB"
    )
    print(
        f"one agent set with {agents} agents: {per_agent / 1024:.1f} KiB per agent "
        f"incl. the market view (goal >= 10,000 agents at <= 20 KiB; ratio "
        f"{per_agent / 20480:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
