"""The scenario's fleet as the market's own registration commands: the seeded fleet generator
(:func:`hero.market.fleet.generate_fleet`) gives realistic nodes, then the scenario's regions,
uptime range, farmer policy mix and SLA terms are laid over it. Pure: nothing here writes.
"""

from __future__ import annotations

import random
from decimal import Decimal

from hero.market.fleet import REGIONS, generate_fleet
from hero.simulate.scenario import ScenarioError, SimScenario
from schemas import Command, RegisterFarm, RegisterNode, SetFarmerPolicy

__all__ = ["build_fleet"]


def _uptime(rng: random.Random, low: Decimal, high: Decimal) -> Decimal:
    drawn = low + (high - low) * Decimal(rng.randrange(0, 1001)) / 1000
    return drawn.quantize(Decimal("0.01"))


def build_fleet(scenario: SimScenario, rng: random.Random) -> list[Command]:
    """Farms, nodes and farm policies in registration order; :class:`ScenarioError` when a
    failure names a node the fleet does not have."""
    spec = scenario.fleet
    commands = generate_fleet(
        rng.randrange(1 << 30),
        farms=spec.farms,
        nodes_per_farm=spec.nodes_per_farm,
        grid3_share=float(spec.grid3_share),
    )
    regions = sorted(spec.regions)
    places: dict[str, tuple[str, str]] = {}
    laid: list[Command] = []
    for command in commands:
        if isinstance(command, RegisterFarm) and regions:
            region = rng.choices(regions, weights=[spec.regions[r] for r in regions])[0]
            places[command.farm_id] = (region, rng.choice(REGIONS[region]))
        if isinstance(command, RegisterFarm | RegisterNode) and command.farm_id in places:
            region, country = places[command.farm_id]
            command = command.model_copy(update={"region": region, "country": country})
        if isinstance(command, RegisterNode):
            uptime = _uptime(rng, *spec.uptime_pct)
            command = command.model_copy(update={"uptime_pct": uptime})
        if isinstance(command, SetFarmerPolicy):
            command = _policy_of(scenario, command, rng)
        laid.append(command)
    _check_failures(scenario, laid)
    return laid


def _policy_of(scenario: SimScenario, command: SetFarmerPolicy, rng: random.Random) -> Command:
    mix = scenario.fleet.policies
    policy = command.policy
    if mix:
        policy = rng.choices([m.policy for m in mix], weights=[m.weight for m in mix])[0]
    if scenario.sla is not None and "sla" not in policy.model_fields_set:
        policy = policy.model_copy(update={"sla": scenario.sla})
    return command.model_copy(update={"policy": policy})


def _check_failures(scenario: SimScenario, fleet: list[Command]) -> None:
    nodes = {c.node_id for c in fleet if isinstance(c, RegisterNode)}
    unknown = sorted(
        {f.node_id for f in scenario.failures if f.node_id is not None and f.node_id not in nodes}
    )
    if unknown:
        raise ScenarioError(
            f"failures name nodes the fleet does not have: {unknown} "
            f"(the fleet's nodes are {min(nodes)} .. {max(nodes)})"
        )
