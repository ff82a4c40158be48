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
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hero.market.fleet import generate_mandates
from hero.simulate import load_scenario, simulate
from hero.simulate.scenario import Offtaker

ROOT = Path(__file__).resolve().parents[1]


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


if __name__ == "__main__":
    main()
