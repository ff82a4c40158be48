"""The market twin's speed: simulated events/s and simulated-time speed-up.

    .venv/bin/python benchmarks/simulate.py [--scenario scenarios/demo-grid.yaml] [--days 7]
                                            [--farms N] [--seed 1] [--store memory|sqlite]

Runs ``hero simulate``'s engine on the scenario (``--farms`` overrides its fleet's size, to
see how the twin scales) into a temporary directory, and prints the events the run committed,
its wall time, events/s and how many times faster than real time the simulated days ran,
with the report's contract, bill and check figures. ``--offtakers N`` replaces the
scenario's offtakers with N generated mandates (``hero.market.fleet.generate_mandates``) and
drops its failures. Issue 17 asks for 30 days of 1,000 farms and 200 offtakers within 5
minutes: ``--days 30 --farms 1000 --offtakers 200``.

The baseline of the same run is the in-process market alone: the same number of farms and
offtakers (generated), the agents and the market service on a memory store and a manual
clock moved from one agent wakeup to the next for one simulated hour -- no
twin around it (no hours, telemetry, billing, treasury or report). Its events/s beside the
twin's says what the twin's own work costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.local import LocalMarket
from hero.domain.clock import ManualClock
from hero.market.fleet import generate_fleet, generate_mandates
from hero.simulate import load_scenario, simulate
from hero.simulate.scenario import Offtaker
from hero.store import MemoryEventStore

ROOT = Path(__file__).resolve().parents[1]


def in_process_market(farms: int, offtakers: int, seed: int) -> tuple[int, float]:
    """(events, wall seconds) of the in-process market alone negotiating ``offtakers``
    generated mandates with ``farms`` generated farms for a simulated hour."""
    clock = ManualClock(datetime(2026, 1, 5, tzinfo=UTC))
    store = MemoryEventStore(clock)
    market = LocalMarket(store, clock)
    for command in generate_fleet(seed, farms):
        market.service.handle(command, actor="bench")
    market.catch_up()
    first = store.current_position()
    began = time.perf_counter()
    for mandate in generate_mandates(seed, offtakers):
        market.service.handle(mandate, actor="bench")
    # One simulated hour: the negotiations' offer windows and retries, not the mandates'
    # periodic wakeups (those go on for ever).
    until = clock.now() + timedelta(hours=1)
    while True:
        market.run_until_quiet(max_steps=100_000)
        now = clock.now()
        wakeups = [
            w for b in market.agents.brains.values() if (w := b.next_wakeup()) and now < w < until
        ]
        if not wakeups:
            break
        clock.set(min(wakeups))
    return store.current_position() - first, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "demo-grid.yaml")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--farms", type=int, default=None)
    parser.add_argument(
        "--offtakers", type=int, default=None, help="generated mandates instead of the scenario's"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if args.farms is not None:
        fleet = scenario.fleet.model_copy(update={"farms": args.farms})
        scenario = scenario.model_copy(update={"fleet": fleet})
    if args.offtakers is not None:
        generated = generate_mandates(args.seed, args.offtakers)
        offtakers = [Offtaker(offtaker_id=m.offtaker_id, mandate=m.mandate) for m in generated]
        scenario = scenario.model_copy(update={"offtakers": offtakers, "failures": []})
    with tempfile.TemporaryDirectory(prefix="hero-sim-bench-") as out:
        done = simulate(scenario, days=args.days, seed=args.seed, out=Path(out), store=args.store)
    report = done.report
    print(
        f"{scenario.name}: {scenario.fleet.farms} farms, {len(scenario.offtakers)} offtakers, "
        f"{args.days} simulated days, {args.store} store, seed {args.seed}\n"
        f"  {done.events:,} events in {done.wall_s:.1f} s: {done.events_per_s:,.0f} events/s, "
        f"{done.speed_up:,.0f}x real time\n"
        f"  {report['contracts']['created']} contracts, {report['money']['bills']} bills, "
        f"ledger {'balanced' if report['money']['ledger']['balanced'] else 'NOT balanced'}, "
        f"{len(report['checks']['overcommitted_nodes'])} over-committed nodes"
    )
    events, wall = in_process_market(scenario.fleet.farms, len(scenario.offtakers), args.seed)
    print(
        f"baseline, the in-process market alone ({scenario.fleet.farms} farms, "
        f"{len(scenario.offtakers)} offtakers, one simulated hour): {events:,} events in "
        f"{wall:.1f} s: {events / wall:,.0f} events/s\n"
        f"  ratio twin/in-process market: {done.events_per_s / (events / wall):.2f}"
    )


if __name__ == "__main__":
    main()
