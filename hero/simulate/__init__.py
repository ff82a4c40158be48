"""``hero simulate``: the market twin. The real market (brains, market service, billing,
treasury, ledger) runs on a simulated grid and a manual clock, from a scenario file, and
writes ``report.json``. :mod:`hero.simulate.scenario` reads the scenario,
:mod:`hero.simulate.engine` runs it, :mod:`hero.simulate.report` tells what happened.
A process: the outermost layer.
"""

from hero.simulate.report import build_report, dump_report, report_schema
from hero.simulate.run import REPORT_NAME, Simulated, simulate
from hero.simulate.scenario import ScenarioError, SimScenario, load_scenario, parse_scenario

__all__ = [
    "REPORT_NAME",
    "ScenarioError",
    "SimScenario",
    "Simulated",
    "build_report",
    "dump_report",
    "load_scenario",
    "parse_scenario",
    "report_schema",
    "simulate",
]
