"""A seeded simulator of Grid 3 and Grid 4: farms and nodes in the real payload shapes, their
utilization over time (a daily cycle with spikes) and their failures.

The fleet itself (which farms, on which grid, where, node sizes, certification) comes from
``hero.market.fleet.generate_fleet`` (itself pure); this module dresses it as the grid proxy
and the node registrar would serve it. Everything is a function of the seed and of the time
asked about (explicit, or the injected clock): the same seed and time give the same payloads,
whatever was asked before. Pure: no I/O, no global randomness.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hero.domain.clock import Clock, ManualClock
from hero.grids.models import COUNTRY_NAMES
from hero.market.fleet import generate_fleet
from schemas import Grid, NodeStatus, RegisterFarm, RegisterNode, Resources

__all__ = ["GridSimulator", "Outage", "Sample", "SimFarm", "SimNode", "paginate"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_CITIES = {
    "BE": "Ghent", "NL": "Amsterdam", "DE": "Frankfurt", "FR": "Paris", "AT": "Vienna",
    "CH": "Zurich", "ES": "Madrid", "IT": "Milan", "FI": "Helsinki", "SE": "Stockholm",
    "US": "Ashburn", "CA": "Toronto", "SG": "Singapore", "JP": "Tokyo", "IN": "Mumbai",
    "VN": "Hanoi", "TW": "Taipei", "EG": "Cairo", "KE": "Nairobi", "TZ": "Dar es Salaam",
    "ZA": "Johannesburg", "GH": "Accra", "BR": "Sao Paulo", "CL": "Santiago",
    "AR": "Buenos Aires", "AU": "Sydney", "NZ": "Auckland",
}  # fmt: skip
_UTC_OFFSET = {"north-america": -5, "south-america": -3, "asia": 7, "oceania": 10}
_STELLAR = "GABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV"


@dataclass(frozen=True)
class SimFarm:
    grid: Grid
    farm_id: int
    name: str
    twin_id: int
    country: str
    certified: bool
    public_ips: int


@dataclass(frozen=True)
class SimNode:
    grid: Grid
    node_id: int
    farm_id: int
    twin_id: int
    country: str
    region: str
    certified: bool
    total: Resources
    created: datetime
    base_load: float
    swing: float
    peak_hour: float
    power_managed: bool
    dedicated: bool
    num_gpu: int
    price_usd: Decimal


@dataclass(frozen=True)
class Sample:
    """Utilization of a node at a time: the share of its cores in use (above 1 when
    overprovisioned) and whether a spike was on."""

    at: datetime
    cpu: float
    spike: bool


@dataclass(frozen=True)
class Outage:
    start: datetime
    end: datetime

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


def paginate(items: list[Any], page: int = 1, size: int = 50) -> list[Any]:
    """One page of ``items``, pages counted from 1 as the grid proxy does."""
    if page < 1 or size < 1:
        raise ValueError(f"page and size must be >= 1, got page={page} size={size}")
    return items[(page - 1) * size : page * size]


class GridSimulator:
    """A fleet of ``farms`` farms (a ``grid3_share`` of them on Grid 3) and their nodes."""

    def __init__(
        self,
        seed: int,
        farms: int = 8,
        *,
        nodes_per_farm: tuple[int, int] = (1, 4),
        grid3_share: float = 0.6,
        clock: Clock | None = None,
        spike_chance: float = 0.04,
        failure_chance: float = 0.08,
    ):
        self.seed = seed
        self.clock = clock or ManualClock(EPOCH + timedelta(days=30))
        self.spike_chance = spike_chance
        self.failure_chance = failure_chance
        self.farms: list[SimFarm] = []
        self.nodes: list[SimNode] = []
        self._build(generate_fleet(seed, farms, nodes_per_farm, grid3_share))

    # -- the fleet --------------------------------------------------------------------------

    def _build(self, commands: list[Any]) -> None:
        rng = random.Random(f"grids:{self.seed}")
        farm_numbers: dict[str, int] = {}
        next_node = {Grid.GRID3: 1, Grid.GRID4: 1}
        for command in commands:
            if isinstance(command, RegisterFarm):
                number = int(command.farm_id.rsplit("-", 1)[-1])
                farm_numbers[command.farm_id] = number
                self.farms.append(
                    SimFarm(
                        grid=command.grid,
                        farm_id=number,
                        name=command.name,
                        twin_id=1000 + number,
                        country=command.country,
                        certified=command.certified,
                        public_ips=rng.choice((0, 0, 1, 2, 4)),
                    )
                )
            elif isinstance(command, RegisterNode):
                number = next_node[command.grid]
                next_node[command.grid] += 1
                offset = _UTC_OFFSET.get(command.region, 1)
                self.nodes.append(
                    SimNode(
                        grid=command.grid,
                        node_id=number,
                        farm_id=farm_numbers[command.farm_id],
                        twin_id=5000 + number,
                        country=command.country,
                        region=command.region,
                        certified=command.certified,
                        total=command.total,
                        created=EPOCH - timedelta(days=rng.randint(30, 900)),
                        base_load=rng.uniform(0.1, 0.5),
                        swing=rng.uniform(0.1, 0.3),
                        peak_hour=(14 - offset) % 24,
                        power_managed=rng.random() < 0.15,
                        dedicated=rng.random() < 0.1,
                        num_gpu=rng.choice((0, 0, 0, 0, 1, 2)),
                        price_usd=Decimal(rng.randint(1500, 12000)) / 100,
                    )
                )

    def node(self, grid: Grid, node_id: int) -> SimNode:
        for node in self.nodes:
            if node.grid == grid and node.node_id == node_id:
                return node
        raise KeyError(f"no {grid.value} node {node_id}")

    def _at(self, at: datetime | None) -> datetime:
        moment = at or self.clock.now()
        if moment.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        return moment

    # -- utilization ------------------------------------------------------------------------

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self.seed, *parts)))

    def sample(self, node: SimNode, at: datetime) -> Sample:
        """The node's load at ``at``: its base load, a daily cosine peaking at its local 14:00,
        and, some hours, a spike that may push it past its cores."""
        hours = (at - EPOCH).total_seconds() / 3600
        daily = math.cos(2 * math.pi * ((hours % 24) - node.peak_hour) / 24)
        load = node.base_load + node.swing * daily
        hour_rng = self._rng("spike", node.grid.value, node.node_id, math.floor(hours))
        spike = hour_rng.random() < self.spike_chance
        if spike:
            load += hour_rng.uniform(0.4, 0.9)
        return Sample(at=at, cpu=round(max(load, 0.0), 4), spike=spike)

    def series(
        self, node: SimNode, start: datetime, hours: int, step: timedelta = timedelta(hours=1)
    ) -> list[Sample]:
        """Samples every ``step`` over ``hours`` hours from ``start``."""
        count = int(timedelta(hours=hours) / step)
        return [self.sample(node, start + step * i) for i in range(count)]

    def used(self, node: SimNode, at: datetime) -> Resources:
        """What is in use at ``at``: cores follow the load (and may exceed the total), memory
        and SSD a share of it, capped at the total."""
        cpu = self.sample(node, at).cpu
        share = min(cpu, 0.95)
        t = node.total
        return Resources(
            cru=round(t.cru * cpu),
            mru=int(t.mru * share),
            sru=int(t.sru * share / 2),
            hru=int(t.hru * share / 3),
        )

    # -- failures ---------------------------------------------------------------------------

    def outages(self, node: SimNode, start: datetime, end: datetime) -> list[Outage]:
        """Outages overlapping [start, end): on some days a node fails for 1-12 hours."""
        found = []
        day = math.floor((start - EPOCH) / _DAY) - 1
        while EPOCH + day * _DAY < end:
            rng = self._rng("failure", node.grid.value, node.node_id, day)
            if rng.random() < self.failure_chance:
                begin = EPOCH + day * _DAY + timedelta(minutes=rng.randrange(24 * 60))
                outage = Outage(begin, begin + timedelta(minutes=rng.randint(60, 12 * 60)))
                if outage.end > start and outage.start < end:
                    found.append(outage)
            day += 1
        return found

    def outage_at(self, node: SimNode, at: datetime) -> Outage | None:
        return next((o for o in self.outages(node, at, at + timedelta(seconds=1))), None)

    def status(self, node: SimNode, at: datetime | None = None) -> NodeStatus:
        """Down during an outage; a power-managed Grid 3 node is on standby from 00:00 to
        06:00 UTC; up otherwise."""
        at = self._at(at)
        if self.outage_at(node, at) is not None:
            return NodeStatus.DOWN
        if node.grid == Grid.GRID3 and node.power_managed and at.hour < 6:
            return NodeStatus.STANDBY
        return NodeStatus.UP

    def _last_boot(self, node: SimNode, at: datetime) -> datetime:
        past = [o for o in self.outages(node, at - timedelta(days=7), at) if o.end <= at]
        return max([node.created, at - timedelta(days=7), *(o.end for o in past)])

    # -- Grid 3 payloads (grid proxy) -------------------------------------------------------

    def grid3_farms(self) -> list[dict[str, Any]]:
        return [self._grid3_farm(f) for f in self.farms if f.grid == Grid.GRID3]

    def _grid3_farm(self, farm: SimFarm) -> dict[str, Any]:
        return {
            "farmId": farm.farm_id,
            "name": farm.name,
            "twinId": farm.twin_id,
            "pricingPolicyId": 1,
            "certificationType": "Gold" if farm.certified else "NotCertified",
            "stellarAddress": _STELLAR[: 56 - len(str(farm.farm_id))] + str(farm.farm_id),
            "dedicated": False,
            "publicIps": [
                {
                    "id": f"0x{farm.farm_id:04x}{i:02x}",
                    "ip": f"185.69.{farm.farm_id % 250}.{10 + i}/24",
                    "gateway": f"185.69.{farm.farm_id % 250}.1",
                    "contractId": 0,
                }
                for i in range(farm.public_ips)
            ],
        }

    def grid3_nodes(self, at: datetime | None = None) -> list[dict[str, Any]]:
        at = self._at(at)
        return [self._grid3_node(n, at) for n in self.nodes if n.grid == Grid.GRID3]

    def _grid3_node(self, node: SimNode, at: datetime) -> dict[str, Any]:
        status = self.status(node, at)
        outage = self.outage_at(node, at)
        seen = outage.start if outage else at - timedelta(minutes=(node.node_id * 7) % 40)
        used = self.used(node, at) if status == NodeStatus.UP else Resources()
        country = COUNTRY_NAMES.get(node.country, node.country)
        return {
            "id": f"node-{node.node_id}",
            "nodeId": node.node_id,
            "farmId": node.farm_id,
            "twinId": node.twin_id,
            "country": country,
            "city": _CITIES.get(node.country, "Unknown"),
            "gridVersion": 3,
            "uptime": int((seen - self._last_boot(node, seen)).total_seconds()),
            "created": int(node.created.timestamp()),
            "updatedAt": int(seen.timestamp()),
            "total_resources": _g3_resources(node.total),
            "used_resources": _g3_resources(used),
            "location": {"country": country, "city": _CITIES.get(node.country, "Unknown")},
            "status": status.value,
            "certificationType": "Certified" if node.certified else "Diy",
            "dedicated": node.dedicated,
            "rentContractId": 0,
            "rentedByTwinId": 0,
            "extraFee": 0,
            "price_usd": node.price_usd,
            "num_gpu": node.num_gpu,
            "publicConfig": {"ipv4": "", "ipv6": "", "domain": "", "gw4": "", "gw6": ""},
        }

    def grid3_contracts(self, at: datetime | None = None) -> list[dict[str, Any]]:
        """Node contracts on the Grid 3 nodes: some running, some in grace, some deleted."""
        at = self._at(at)
        contracts = []
        number = 1
        for node in self.nodes:
            if node.grid != Grid.GRID3:
                continue
            rng = self._rng("contracts", node.node_id)
            for _ in range(rng.randint(0, 3)):
                created = node.created + timedelta(hours=rng.randint(1, 24 * 300))
                if created > at:
                    continue
                contracts.append(
                    {
                        "contract_id": number,
                        "twin_id": 7000 + rng.randint(1, 50),
                        "state": rng.choice(("Created", "Created", "GracePeriod", "Deleted")),
                        "created_at": int(created.timestamp()),
                        "type": "node",
                        "details": {
                            "nodeId": node.node_id,
                            "farm_id": node.farm_id,
                            "deployment_data": "{}",
                            "deployment_hash": f"{number:032x}",
                            "number_of_public_ips": 0,
                        },
                    }
                )
                number += 1
        return contracts

    # -- Grid 4 payloads (node registrar) ---------------------------------------------------

    def grid4_farms(self) -> list[dict[str, Any]]:
        return [
            {
                "farm_id": f.farm_id,
                "farm_name": f.name,
                "twin_id": f.twin_id,
                "stellar_address": _STELLAR[: 56 - len(str(f.farm_id))] + str(f.farm_id),
                "dedicated": False,
            }
            for f in self.farms
            if f.grid == Grid.GRID4
        ]

    def grid4_nodes(self, at: datetime | None = None) -> list[dict[str, Any]]:
        at = self._at(at)
        return [self._grid4_node(n, at) for n in self.nodes if n.grid == Grid.GRID4]

    def _grid4_node(self, node: SimNode, at: datetime) -> dict[str, Any]:
        outage = self.outage_at(node, at)
        seen = outage.start if outage else at - timedelta(minutes=(node.node_id * 7) % 40)
        t = node.total
        return {
            "node_id": node.node_id,
            "farm_id": node.farm_id,
            "twin_id": node.twin_id,
            "location": {
                "country": COUNTRY_NAMES.get(node.country, node.country),
                "city": _CITIES.get(node.country, "Unknown"),
                "longitude": "4.35",
                "latitude": "50.85",
            },
            "resources": {"hru": t.hru, "sru": t.sru, "cru": t.cru, "mru": t.mru},
            "secure_boot": node.certified,
            "virtualized": False,
            "serial_number": f"SN-{node.farm_id:04d}-{node.node_id:05d}",
            "last_seen": seen.isoformat().replace("+00:00", "Z"),
            "online": outage is None,
            "approved": True,
        }


def _g3_resources(r: Resources) -> dict[str, int]:
    return {"cru": r.cru, "sru": r.sru, "hru": r.hru, "mru": r.mru}
