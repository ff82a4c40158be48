"""A realistic, seeded fleet of farms, nodes and farmer policies; and offtaker mandates.

Pure: the same seed always gives the same commands, with the same command ids, so sending a
fleet twice to the same store writes it once. Node sizes follow real 3Nodes (8-64 cores,
32-512 GB RAM, 1-8 TB SSD, sometimes HDD); prices sit around TFChain's manual values
(0.0306 USD per CU-hour, 0.0194 USD per SU-hour) or a markup on the reference price.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from hero.domain.pricing import cu, su
from schemas import (
    Command,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    PolicyMode,
    RegisterFarm,
    RegisterNode,
    Resources,
    SetFarmerPolicy,
    SetOfftakerMandate,
    Sla,
    WorkloadSpec,
)

__all__ = [
    "MANUAL_CU_HOUR",
    "MANUAL_SU_HOUR",
    "REGIONS",
    "farm_id_for",
    "generate_fleet",
    "generate_mandates",
    "monthly_estimate",
    "node_id_for",
]

#: TFChain's manual (farmer-set) prices in USD, the anchor of generated fixed prices.
MANUAL_CU_HOUR = Decimal("0.0306")
MANUAL_SU_HOUR = Decimal("0.0194")
HOURS_PER_MONTH = 720

#: Regions and the countries their farms are in (weights: where the grid's farms are).
REGIONS: dict[str, tuple[str, ...]] = {
    "europe": ("BE", "NL", "DE", "FR", "AT", "CH", "ES", "IT", "FI", "SE"),
    "north-america": ("US", "CA"),
    "asia": ("SG", "JP", "IN", "VN", "TW"),
    "africa": ("EG", "KE", "TZ", "ZA", "GH"),
    "south-america": ("BR", "CL", "AR"),
    "oceania": ("AU", "NZ"),
}
_REGION_WEIGHTS = {
    "europe": 45,
    "north-america": 20,
    "asia": 15,
    "africa": 10,
    "south-america": 6,
    "oceania": 4,
}
_FARM_WORDS = (
    "Alpine", "Atlas", "Baobab", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor",
    "Iris", "Juniper", "Kestrel", "Lagoon", "Meridian", "Nimbus", "Orchid", "Prairie",
    "Quartz", "Redwood", "Summit", "Tundra", "Umber", "Valley", "Willow", "Zephyr",
)  # fmt: skip
_FARM_KINDS = ("Farm", "Datacenter", "Cloud", "Grid", "Hosting", "Nodes")

#: (cores, RAM GB choices) of common 3Node builds, small to large.
_NODE_BUILDS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (8, (32, 64)),
    (12, (32, 64)),
    (16, (64, 128)),
    (24, (96, 128, 192)),
    (32, (128, 256)),
    (48, (192, 256, 384)),
    (64, (256, 384, 512)),
)
_SSD_TB = (1, 2, 2, 4, 4, 8)
_HDD_TB = (4, 8, 12, 16)


def farm_id_for(number: int) -> str:
    return f"farm-{number:04d}"


def node_id_for(farm_number: int, index: int) -> str:
    return f"node-{farm_number:04d}-{index:02d}"


@dataclass(frozen=True)
class _Farm:
    number: int
    farm_id: str
    grid: Grid
    region: str
    country: str
    certified: bool


# -- the fleet ------------------------------------------------------------------------------------


def generate_fleet(
    seed: int,
    farms: int = 12,
    nodes_per_farm: tuple[int, int] = (1, 4),
    grid3_share: float = 0.6,
    *,
    certified_share: float = 0.3,
    approve_share: float = 0.1,
    off_share: float = 0.05,
    markup_share: float = 0.3,
) -> list[Command]:
    """RegisterFarm, then its RegisterNode and SetFarmerPolicy commands, farm by farm."""
    _check_fleet_arguments(farms, nodes_per_farm, grid3_share)
    rng = random.Random(f"fleet:{seed}")
    low, high = nodes_per_farm
    commands: list[Command] = []
    for number in range(1, farms + 1):
        farm = _farm(rng, number, grid3_share, certified_share)
        commands.append(_register_farm(seed, farm, rng))
        uptimes: list[Decimal] = []
        for index in range(1, rng.randint(low, high) + 1):
            node = _register_node(seed, farm, index, rng)
            uptimes.append(node.uptime_pct)
            commands.append(node)
        mode = _mode(rng, approve_share, off_share)
        policy = _policy(rng, mode, min(uptimes), markup_share)
        commands.append(
            SetFarmerPolicy(
                command_id=f"fleet-{seed}.{farm.farm_id}.policy",
                farm_id=farm.farm_id,
                policy=policy,
            )
        )
    return commands


def _check_fleet_arguments(farms: int, nodes_per_farm: tuple[int, int], share: float) -> None:
    if farms < 1 or farms > 9999:
        raise ValueError(f"farms must be in 1..9999, got {farms}")
    low, high = nodes_per_farm
    if low < 1 or high < low or high > 99:
        raise ValueError(
            f"nodes_per_farm must be (min, max) with 1 <= min <= max <= 99, got {nodes_per_farm}"
        )
    if not 0 <= share <= 1:
        raise ValueError(f"grid3_share must be in [0, 1], got {share}")


def _farm(rng: random.Random, number: int, grid3_share: float, certified_share: float) -> _Farm:
    region = rng.choices(list(_REGION_WEIGHTS), weights=list(_REGION_WEIGHTS.values()))[0]
    return _Farm(
        number=number,
        farm_id=farm_id_for(number),
        grid=Grid.GRID3 if rng.random() < grid3_share else Grid.GRID4,
        region=region,
        country=rng.choice(REGIONS[region]),
        certified=rng.random() < certified_share,
    )


def _register_farm(seed: int, farm: _Farm, rng: random.Random) -> RegisterFarm:
    name = f"{rng.choice(_FARM_WORDS)} {rng.choice(_FARM_KINDS)} {farm.number}"
    return RegisterFarm(
        command_id=f"fleet-{seed}.{farm.farm_id}.register",
        farm_id=farm.farm_id,
        name=name,
        grid=farm.grid,
        country=farm.country,
        region=farm.region,
        certified=farm.certified,
    )


def _register_node(seed: int, farm: _Farm, index: int, rng: random.Random) -> RegisterNode:
    node_id = node_id_for(farm.number, index)
    return RegisterNode(
        command_id=f"fleet-{seed}.{node_id}.register",
        node_id=node_id,
        farm_id=farm.farm_id,
        grid=farm.grid,
        country=farm.country,
        region=farm.region,
        total=_node_size(rng),
        certified=farm.certified,
        uptime_pct=_uptime(rng, farm.certified),
    )


def _node_size(rng: random.Random) -> Resources:
    cores, memories = rng.choice(_NODE_BUILDS)
    hdd_tb = rng.choice(_HDD_TB) if rng.random() < 0.3 else 0
    return Resources.from_gb(
        cru=cores,
        mru_gb=rng.choice(memories),
        sru_gb=rng.choice(_SSD_TB) * 1000,
        hru_gb=hdd_tb * 1000,
        ipv4=rng.choice((0, 0, 0, 1, 2, 4)),
    )


def _uptime(rng: random.Random, certified: bool) -> Decimal:
    """95-99.99 %; certified hardware sits in the upper part of the range."""
    low = 9900 if certified else 9500
    return Decimal(rng.randint(low, 9999)) / 100


def _mode(rng: random.Random, approve_share: float, off_share: float) -> PolicyMode:
    draw = rng.random()
    if draw < off_share:
        return PolicyMode.OFF
    if draw < off_share + approve_share:
        return PolicyMode.APPROVE
    return PolicyMode.AUTO


def _policy(
    rng: random.Random, mode: PolicyMode, uptime: Decimal, markup_share: float
) -> FarmerPolicy:
    sla = Sla(
        uptime_pct=min(
            rng.choice((Decimal(95), Decimal(98), Decimal(99), Decimal("99.5"))), uptime
        ),
        penalty_pct=Decimal(rng.choice((0, 5, 10, 20))),
    )
    prices = _prices(rng, markup_share)
    return FarmerPolicy(
        mode=mode,
        **prices,
        reserve_share=rng.choice((Decimal(0), Decimal("0.1"), Decimal("0.2"), Decimal("0.3"))),
        max_term_hours=rng.choice((None, None, 168, 720, 2160, 8760)),
        sla=sla,
        approval_ttl_s=rng.choice((600, 1800, 3600)),
    )


def _prices(rng: random.Random, markup_share: float) -> dict[str, object]:
    """Fixed prices around the manual values (with a floor half of the time), or a markup."""
    if rng.random() < markup_share:
        return {"markup": _decimal(rng.uniform(1.0, 3.0), "0.01")}
    cu_hour = _decimal(float(MANUAL_CU_HOUR) * rng.uniform(0.8, 1.3), "0.0001")
    su_hour = _decimal(float(MANUAL_SU_HOUR) * rng.uniform(0.8, 1.3), "0.0001")
    prices: dict[str, object] = {
        "price_cu_hour": Money.of(cu_hour, "USD"),
        "price_su_hour": Money.of(su_hour, "USD"),
    }
    if rng.random() < 0.5:
        floor = (cu_hour * Decimal(rng.choice(("0.7", "0.8", "0.9")))).quantize(Decimal("0.0001"))
        prices["floor_cu_hour"] = Money.of(floor, "USD")
    return prices


def _decimal(value: float, places: str) -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places))


# -- mandates -------------------------------------------------------------------------------------

_OFFTAKER_NAMES = (
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "cyberdyne", "soylent", "aperture", "massive", "vandelay", "oscorp", "gringotts",
)  # fmt: skip

#: Workload shapes per replica: (name, cores, RAM GB, SSD GB).
_WORKLOADS: tuple[tuple[str, int, int, int], ...] = (
    ("web", 2, 4, 50),
    ("api", 2, 8, 50),
    ("cache", 2, 8, 20),
    ("worker", 4, 8, 100),
    ("db", 4, 16, 200),
    ("search", 8, 32, 400),
    ("ml", 8, 32, 500),
)


def monthly_estimate(resources: Resources, replicas: int) -> Money:
    """What ``replicas`` of ``resources`` cost a month at the manual prices."""
    hourly = cu(resources) * MANUAL_CU_HOUR + su(resources) * MANUAL_SU_HOUR
    return Money.rounded(hourly * replicas * HOURS_PER_MONTH, "USD")


def generate_mandates(
    seed: int,
    offtakers: int = 4,
    *,
    workloads: tuple[int, int] = (1, 2),
    replicas: tuple[int, int] = (1, 5),
    regions: list[str] | None = None,
    binding_share: float = 0.2,
    suffix: str = "",
) -> list[SetOfftakerMandate]:
    """One mandate per offtaker: workloads, regions and grids, a price ceiling and a budget.

    ``regions`` are the regions a workload may ask for (default: all). A share
    ``binding_share`` of the mandates gets a budget below what the workloads would cost at
    the manual prices, so the budget binds. ``suffix`` is appended to every offtaker id.
    """
    if offtakers < 1:
        raise ValueError(f"offtakers must be >= 1, got {offtakers}")
    rng = random.Random(f"mandates:{seed}")
    names = _offtaker_ids(offtakers, suffix)
    return [
        SetOfftakerMandate(
            command_id=f"mandates-{seed}.{offtaker}",
            offtaker_id=offtaker,
            mandate=_mandate(rng, workloads, replicas, regions or list(REGIONS), binding_share),
        )
        for offtaker in names
    ]


def _offtaker_ids(count: int, suffix: str) -> list[str]:
    ids = []
    for index in range(count):
        name = _OFFTAKER_NAMES[index % len(_OFFTAKER_NAMES)]
        lap = index // len(_OFFTAKER_NAMES)
        ids.append(f"{name}{'-' + str(lap + 1) if lap else ''}{'-' + suffix if suffix else ''}")
    return ids


def _mandate(
    rng: random.Random,
    workloads: tuple[int, int],
    replicas: tuple[int, int],
    regions: list[str],
    binding_share: float,
) -> Mandate:
    shapes = rng.sample(_WORKLOADS, k=min(rng.randint(*workloads), len(_WORKLOADS)))
    specs = [_workload(rng, shape, replicas, regions) for shape in shapes]
    estimate = sum((monthly_estimate(s.resources, s.replicas) for s in specs), Money.zero("USD"))
    factor = rng.uniform(0.4, 0.8) if rng.random() < binding_share else rng.uniform(1.5, 3.0)
    return Mandate(
        workloads=specs,
        budget_month=Money.of(_decimal(float(estimate.amount) * factor, "1"), "USD"),
        max_price_cu_hour=Money.of(_decimal(rng.uniform(0.035, 0.06), "0.0001"), "USD"),
        prefer_grid=rng.choice((None, None, Grid.GRID3, Grid.GRID4)),
        certified_only=rng.random() < 0.1,
        term_hours=rng.choice((720, 720, 720, 168, 2160)),
    )


def _workload(
    rng: random.Random,
    shape: tuple[str, int, int, int],
    replicas: tuple[int, int],
    regions: list[str],
) -> WorkloadSpec:
    name, cores, ram_gb, ssd_gb = shape
    wanted = rng.sample(regions, k=min(rng.choice((0, 0, 1, 1, 2)), len(regions)))
    return WorkloadSpec(
        workload_id=name,
        resources=Resources.from_gb(cru=cores, mru_gb=ram_gb, sru_gb=ssd_gb),
        replicas=rng.randint(*replicas),
        regions=sorted(wanted),
        grids=rng.choice(([Grid.GRID3, Grid.GRID4], [Grid.GRID3], [Grid.GRID4])),
        min_uptime_pct=rng.choice((Decimal(95), Decimal(98), Decimal(99))),
    )
