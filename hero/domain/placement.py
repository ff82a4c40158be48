"""Where replicas go, which ones leave, and what a broken SLA costs (DESIGN.md "One
negotiation, end to end", step 6).

Candidates come from both grids and are compared in one currency and unit: USD per CU-hour.
A Grid 3 node is priced as TFChain bills it, with a pricing policy (:func:`hourly_cost`, no
certified factor: TFChain billing does not apply it); a Grid 4 candidate with the price its
farmer offered. Both go through :func:`price_per_cu_hour`, which prices storage and IPs out
at the reference rates, the same normalisation the offtaker's offer scoring uses.

Each criterion gives a part in [0, 1]; a placement's ``scores`` are the weighted parts (each
rounded to 7 places) and its ``total`` is their exact sum, so the breakdown explains the
choice to the cent. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Protocol

from pydantic import Field, model_validator

from hero.domain.pricing import GENESIS, PricingPolicy, hourly_cost, price_per_cu_hour
from schemas import (
    CurrencyMismatch,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    OfferMade,
    ReplicaMigrated,
    ReplicaPlaced,
    Resources,
    Sla,
    WorkloadSpec,
)
from schemas.exact import ExactModel

__all__ = [
    "CRITERIA",
    "DEFAULT_WEIGHTS",
    "Candidate",
    "ExistingReplica",
    "MigrationPlan",
    "Move",
    "Placement",
    "PlacementPlan",
    "PlacementRequest",
    "PricedContract",
    "choose_scale_down",
    "farm_cap",
    "migration_plan",
    "place_replicas",
    "sla_penalty",
]

CRITERIA = ("cost", "capacity", "region", "uptime", "certification", "grid_spread")

#: Cost first, as the offtaker's scoring does; they sum to 1 so a total is in [0, 1].
DEFAULT_WEIGHTS: Mapping[str, Decimal] = MappingProxyType(
    {
        "cost": Decimal("0.4"),
        "capacity": Decimal("0.1"),
        "region": Decimal("0.15"),
        "uptime": Decimal("0.2"),
        "certification": Decimal("0.05"),
        "grid_spread": Decimal("0.1"),
    }
)

_PLACES = Decimal("0.0000001")
#: TFChain bills a 720-hour month (cost.rs); the SLA is judged over the same period.
_MONTH_HOURS = Decimal(720)


class Candidate(ExactModel):
    """A node (or a farmer's offer on one) that could host replicas.

    ``free`` is what is left on it; ``total`` its size (for the capacity criterion).
    ``price_hour`` is required on Grid 4: the offered price of ``priced_resources`` for an
    hour. On Grid 3 it is ignored: TFChain's pricing policy sets the price.
    """

    candidate_id: str = Field(min_length=1)
    node_id: str = Field(min_length=1)
    farm_id: str = Field(min_length=1)
    grid: Grid
    region: str = ""
    free: Resources
    total: Resources
    certified: bool = False
    uptime_pct: Decimal = Field(default=Decimal(99), ge=0, le=100)
    status: NodeStatus = NodeStatus.UP
    price_hour: Money | None = None
    priced_resources: Resources | None = None

    @model_validator(mode="after")
    def _grid4_priced(self) -> Candidate:
        if self.grid == Grid.GRID4 and (self.price_hour is None or self.priced_resources is None):
            raise ValueError("a Grid 4 candidate needs price_hour and priced_resources")
        if self.price_hour is not None and self.price_hour.currency != "USD":
            raise ValueError("price_hour must be in USD")
        return self

    @classmethod
    def from_offer(
        cls,
        offer: OfferMade,
        *,
        total: Resources | None = None,
        status: NodeStatus = NodeStatus.UP,
    ) -> Candidate:
        """An offer holds exactly its resources for one replica: that is all that is free."""
        return cls(
            candidate_id=offer.offer_id,
            node_id=offer.node_id,
            farm_id=offer.farm_id,
            grid=offer.grid,
            region=offer.region,
            free=offer.resources,
            total=total or offer.resources,
            certified=offer.certified,
            uptime_pct=offer.uptime_pct,
            status=status,
            price_hour=offer.price_hour,
            priced_resources=offer.resources,
        )


class ExistingReplica(ExactModel):
    replica_id: str = Field(min_length=1)
    contract_id: str = Field(min_length=1)
    node_id: str = Field(min_length=1)
    farm_id: str = Field(min_length=1)
    grid: Grid


class PlacementRequest(ExactModel):
    """``count`` new replicas of ``resources`` each. ``max_share_per_farm`` caps the share of
    the workload's replicas (existing and new) on one farm."""

    workload_id: str = Field(min_length=1)
    resources: Resources
    count: int = Field(ge=0)
    max_price_cu_hour: Money
    regions: tuple[str, ...] = ()
    grids: tuple[Grid, ...] = (Grid.GRID3, Grid.GRID4)
    certified_only: bool = False
    prefer_grid: Grid | None = None
    max_share_per_farm: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    weights: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    grid3_policy: PricingPolicy = GENESIS

    @model_validator(mode="after")
    def _consistent(self) -> PlacementRequest:
        if self.max_price_cu_hour.currency != "USD":
            raise ValueError("max_price_cu_hour must be in USD")
        if set(self.weights) != set(CRITERIA):
            raise ValueError(f"weights must name exactly {', '.join(CRITERIA)}")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError("weights cannot be negative")
        if not self.grids:
            raise ValueError("at least one grid")
        return self

    @classmethod
    def for_workload(cls, spec: WorkloadSpec, mandate: Mandate, count: int) -> PlacementRequest:
        return cls(
            workload_id=spec.workload_id,
            resources=spec.resources,
            count=count,
            max_price_cu_hour=mandate.max_price_cu_hour,
            regions=tuple(spec.regions),
            grids=tuple(spec.grids),
            certified_only=mandate.certified_only,
            prefer_grid=mandate.prefer_grid,
            max_share_per_farm=mandate.max_share_per_farm or Decimal(1),
        )


class Placement(ExactModel):
    candidate_id: str
    node_id: str
    farm_id: str
    grid: Grid
    price_cu_hour: Money
    scores: dict[str, Decimal]
    total: Decimal

    def to_event(
        self, offtaker_id: str, workload_id: str, replica_id: str, contract_id: str
    ) -> ReplicaPlaced:
        return ReplicaPlaced(
            offtaker_id=offtaker_id,
            workload_id=workload_id,
            replica_id=replica_id,
            contract_id=contract_id,
            farm_id=self.farm_id,
            node_id=self.node_id,
            grid=self.grid,
            price_cu_hour=self.price_cu_hour,
            scores=dict(self.scores),
            total=self.total,
        )


class PlacementPlan(ExactModel):
    """The placements found, best first; ``unplaced`` replicas found no eligible candidate
    (free capacity, status up, grid, certification, price ceiling, farm cap)."""

    placements: tuple[Placement, ...]
    unplaced: int = Field(ge=0)


class Move(ExactModel):
    replica_id: str
    from_node_id: str
    old_contract_id: str
    placement: Placement

    def to_event(
        self, offtaker_id: str, workload_id: str, to_contract_id: str, reason: str = "node_down"
    ) -> ReplicaMigrated:
        return ReplicaMigrated(
            offtaker_id=offtaker_id,
            workload_id=workload_id,
            replica_id=self.replica_id,
            from_node_id=self.from_node_id,
            to_node_id=self.placement.node_id,
            from_contract_id=self.old_contract_id,
            to_contract_id=to_contract_id,
            reason=reason,
        )


class MigrationPlan(ExactModel):
    """Contract the ``moves`` first; cancel ``cancel_after`` only once they run, so the
    workload never has fewer replicas than before. ``stranded`` replicas found no new home
    and keep their contracts."""

    moves: tuple[Move, ...]
    stranded: tuple[str, ...]
    cancel_after: tuple[str, ...]


def farm_cap(total_replicas: int, max_share_per_farm: Decimal) -> int:
    """At most floor(share * total) replicas per farm, and at least 1 so one replica fits:
    at 0.5, 1 of 1, 1 of 2, 1 of 3, 2 of 4, 2 of 5."""
    share = (max_share_per_farm * total_replicas).to_integral_value(rounding=ROUND_FLOOR)
    return max(1, int(share))


def _usd_per_cu_hour(candidate: Candidate, request: PlacementRequest) -> Money:
    if candidate.grid == Grid.GRID3:
        billed = hourly_cost(request.resources, request.grid3_policy).usd_hour
        return price_per_cu_hour(billed, request.resources)
    if candidate.price_hour is None or candidate.priced_resources is None:
        # The model validator refuses this; kept so the types hold without an assert.
        raise ValueError(f"Grid 4 candidate {candidate.candidate_id} has no price")
    return price_per_cu_hour(candidate.price_hour, candidate.priced_resources)


def _headroom(free_after: Resources, total: Resources) -> Decimal:
    """The smallest share of any sized resource left free after the replica lands."""
    shares = [
        Decimal(left) / Decimal(size)
        for left, size in (
            (free_after.cru, total.cru),
            (free_after.mru, total.mru),
            (free_after.sru, total.sru),
            (free_after.hru, total.hru),
        )
        if size > 0
    ]
    return min(min(shares, default=Decimal(0)), Decimal(1))


def _parts(
    candidate: Candidate,
    per_cu: Money,
    free_after: Resources,
    request: PlacementRequest,
    grid_counts: Counter[Grid],
) -> dict[str, Decimal]:
    ceiling = request.max_price_cu_hour.amount
    fewest = min(grid_counts[grid] for grid in request.grids)
    return {
        # 1 when free, 0 at the price ceiling.
        "cost": max(Decimal(0), 1 - per_cu.amount / ceiling) if ceiling > 0 else Decimal(0),
        "capacity": _headroom(free_after, candidate.total),
        "region": Decimal(not request.regions or candidate.region in request.regions),
        "uptime": candidate.uptime_pct / 100,
        "certification": Decimal(candidate.certified),
        # A preferred grid takes the place of spreading across both.
        "grid_spread": (
            Decimal(candidate.grid == request.prefer_grid)
            if request.prefer_grid is not None
            else Decimal(grid_counts[candidate.grid] == fewest)
        ),
    }


def _weighted(parts: Mapping[str, Decimal], weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {
        name: (weights[name] * parts[name]).quantize(_PLACES, rounding=ROUND_HALF_EVEN)
        for name in CRITERIA
    }


def place_replicas(
    request: PlacementRequest,
    candidates: Iterable[Candidate],
    existing: Sequence[ExistingReplica] = (),
    *,
    exclude_nodes: Collection[str] = (),
) -> PlacementPlan:
    """Place ``request.count`` replicas one at a time, each on the best-scoring eligible
    candidate given those placed before it (ties: cheaper per CU-hour, then candidate id).

    Eligible: status up, not in ``exclude_nodes``, on an allowed grid, certified when asked,
    the replica fits the free capacity left, the price per CU-hour within the ceiling, and its
    farm below :func:`farm_cap` of the workload's final replica count.
    """
    pool = list(candidates)
    free = {c.candidate_id: c.free for c in pool}
    price = {c.candidate_id: _usd_per_cu_hour(c, request) for c in pool}
    farms = Counter(r.farm_id for r in existing)
    grids = Counter(r.grid for r in existing)
    cap = farm_cap(len(existing) + request.count, request.max_share_per_farm)
    placements: list[Placement] = []
    for _ in range(request.count):
        best: tuple[tuple[Decimal, Decimal, str], Placement] | None = None
        for candidate in pool:
            key = candidate.candidate_id
            if not (
                candidate.status == NodeStatus.UP
                and candidate.node_id not in exclude_nodes
                and candidate.grid in request.grids
                and (candidate.certified or not request.certified_only)
                and request.resources.fits_in(free[key])
                and price[key].amount <= request.max_price_cu_hour.amount
                and farms[candidate.farm_id] < cap
            ):
                continue
            free_after = free[key] - request.resources
            parts = _parts(candidate, price[key], free_after, request, grids)
            scores = _weighted(parts, request.weights)
            total = sum(scores.values(), Decimal(0))
            placement = Placement(
                candidate_id=key,
                node_id=candidate.node_id,
                farm_id=candidate.farm_id,
                grid=candidate.grid,
                price_cu_hour=price[key],
                scores=scores,
                total=total,
            )
            # Highest total first, then the cheaper, then the smaller id: deterministic.
            rank = (-total, price[key].amount, key)
            if best is None or rank < best[0]:
                best = (rank, placement)
        if best is None:
            break
        chosen = best[1]
        placements.append(chosen)
        free[chosen.candidate_id] = free[chosen.candidate_id] - request.resources
        farms[chosen.farm_id] += 1
        grids[chosen.grid] += 1
    return PlacementPlan(placements=tuple(placements), unplaced=request.count - len(placements))


class PricedContract(Protocol):
    """What a scale-down ranks a contract by: the event as recorded, or the market model's
    record of it (:class:`hero.model.Contract`)."""

    @property
    def contract_id(self) -> str: ...

    @property
    def price_hour(self) -> Money: ...

    @property
    def starts_at(self) -> datetime: ...


def choose_scale_down(contracts: Sequence[PricedContract], n: int) -> list[str]:
    """The ``n`` contracts to end on a scale-down: the costliest per hour first, and among
    equal prices the newest (latest ``starts_at``) first, then the larger contract id."""
    if n < 0:
        raise ValueError(f"n cannot be negative, got {n}")
    if len({c.price_hour.currency for c in contracts}) > 1:
        raise CurrencyMismatch("contracts priced in several currencies; convert them first")
    ranked = sorted(
        contracts, key=lambda c: (c.price_hour.amount, c.starts_at, c.contract_id), reverse=True
    )
    return [c.contract_id for c in ranked[:n]]


def migration_plan(
    node_down: str,
    replicas_on_it: Sequence[ExistingReplica],
    candidates: Iterable[Candidate],
    request: PlacementRequest,
    others: Sequence[ExistingReplica] = (),
    *,
    down_nodes: Collection[str] = (),
) -> MigrationPlan:
    """New homes for every replica of ``node_down``, never on it nor on ``down_nodes``
    (candidates not up are skipped anyway). ``others`` are the workload's replicas elsewhere:
    the farm cap and the grid spread count them. ``request.count`` is ignored."""
    moving = [r for r in replicas_on_it if r.node_id == node_down]
    if len(moving) != len(replicas_on_it):
        raise ValueError(f"every replica to move must be on node {node_down}")
    # The moving replicas are counted once, at their new home: the cap uses the final total.
    plan = place_replicas(
        request.model_copy(update={"count": len(moving)}),
        candidates,
        others,
        exclude_nodes={node_down, *down_nodes},
    )
    moves = tuple(
        Move(
            replica_id=replica.replica_id,
            from_node_id=node_down,
            old_contract_id=replica.contract_id,
            placement=placement,
        )
        for replica, placement in zip(moving, plan.placements, strict=False)
    )
    stranded = tuple(r.replica_id for r in moving[len(moves) :])
    return MigrationPlan(
        moves=moves, stranded=stranded, cancel_after=tuple(m.old_contract_id for m in moves)
    )


def sla_penalty(
    contract_price_hour: Money,
    hours_down: Decimal,
    sla: Sla,
    period_hours: Decimal = _MONTH_HOURS,
) -> Money:
    """The refund owed for ``hours_down`` hours of downtime in a ``period_hours`` period.

    Uptime = (period - down) / period * 100. At or above ``sla.uptime_pct`` nothing is owed;
    below it, penalty = price per hour * hours down * penalty_pct / 100: the downtime hours
    are refunded at the SLA's share, the hours that ran are not. Exact until one final
    rounding to 7 places, half-even (the currency's places, as billing rounds).
    """
    for name, figure in (("hours_down", hours_down), ("period_hours", period_hours)):
        if isinstance(figure, float):
            raise TypeError(f"{name} must be a Decimal or an int, not a float")
    hours_down, period_hours = Decimal(hours_down), Decimal(period_hours)
    if period_hours <= 0:
        raise ValueError(f"period_hours must be positive, got {period_hours}")
    if not 0 <= hours_down <= period_hours:
        raise ValueError(f"hours_down must be within [0, {period_hours}], got {hours_down}")
    # uptime >= sla, compared without dividing so a boundary like exactly 99% is met exactly.
    if (period_hours - hours_down) * 100 >= sla.uptime_pct * period_hours:
        return Money.zero(contract_price_hour.currency)
    owed = contract_price_hour.amount * hours_down * sla.penalty_pct / 100
    return Money.rounded(owed, contract_price_hour.currency, ROUND_HALF_EVEN)
