"""The scenario of a market twin run: what the grid, its offtakers, its money and its rules
are, read from a YAML or JSON file and checked whole before anything runs.

The scenario's mandates and farmer policies are the market's own types (:mod:`schemas`), so
they are checked by the same rules as a command; what the simulation adds (fleet shape,
utilization traces, failures, top-ups, the TFT price path, the revenue split) is checked here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hero.domain.pricing import SHIPPED_POLICIES
from hero.market.fleet import REGIONS
from schemas import FarmerPolicy, Mandate, NodeId, OfftakerId, Sla

__all__ = [
    "Failure",
    "FleetSpec",
    "Offtaker",
    "PolicyShare",
    "PricePath",
    "ScenarioError",
    "SimScenario",
    "Split",
    "TopUp",
    "Trace",
    "load_scenario",
    "parse_scenario",
]

MAX_DAYS = 366

Share = Annotated[Decimal, Field(ge=0, le=1)]
Percent = Annotated[Decimal, Field(ge=0, le=100)]


class ScenarioError(ValueError):
    """A scenario file that cannot be read or is not a valid scenario; says what and where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyShare(_Strict):
    """One farmer policy of the mix and how many farms (by weight) follow it."""

    weight: int = Field(gt=0, le=1_000_000)
    policy: FarmerPolicy


class FleetSpec(_Strict):
    farms: int = Field(ge=1, le=9999)
    nodes_per_farm: tuple[int, int] = (1, 3)
    grid3_share: Share = Decimal("0.5")
    regions: dict[str, int] = Field(
        default_factory=dict, description="region -> weight; empty: the grid's own mix"
    )
    uptime_pct: tuple[Percent, Percent] = (Decimal(97), Decimal("99.9"))
    """Each node's advertised uptime is drawn uniformly between these."""
    policies: list[PolicyShare] = Field(
        default_factory=list,
        max_length=1000,
        description="the farmer policy mix; empty: the fleet's own",
    )

    @field_validator("nodes_per_farm")
    @classmethod
    def _nodes(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 99:
            raise ValueError(f"must be [min, max] with 1 <= min <= max <= 99, got {list(value)}")
        return value

    @field_validator("uptime_pct")
    @classmethod
    def _uptime(cls, value: tuple[Decimal, Decimal]) -> tuple[Decimal, Decimal]:
        if value[0] > value[1]:
            raise ValueError(f"must be [low, high] with low <= high, got {[str(v) for v in value]}")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - set(REGIONS))
        if unknown:
            raise ValueError(f"unknown regions {unknown}; known: {sorted(REGIONS)}")
        if any(not 0 < weight <= 1_000_000 for weight in value.values()):
            raise ValueError("region weights must be integers in 1..1000000")
        return value


class Trace(_Strict):
    """A replica's cpu load over time, a share of its reserved cores in [0, 1].

    flat: ``base``; diurnal: ``base`` plus ``amplitude`` on a daily sine peaking at
    ``peak_hour``; weekly: diurnal, at ``weekend_factor`` on Saturdays and Sundays; spike:
    ``base``, and ``spike_level`` from ``spike_day``/``peak_hour`` for ``spike_hours``; growth:
    ``base`` rising by ``growth_per_day`` each day. The result is clipped to [0, 1].
    """

    kind: Literal["flat", "diurnal", "weekly", "spike", "growth"] = "flat"
    base: Share = Decimal("0.5")
    amplitude: Share = Decimal("0.2")
    peak_hour: int = Field(default=14, ge=0, le=23)
    weekend_factor: Share = Decimal("0.6")
    spike_day: int = Field(default=1, ge=0, le=MAX_DAYS)
    spike_hours: int = Field(default=3, ge=1, le=24 * MAX_DAYS)
    spike_level: Share = Decimal("0.95")
    growth_per_day: Decimal = Field(default=Decimal("0.02"), ge=-1, le=1)
    noise: Share = Decimal("0.05")
    """Uniform noise of this half-width, drawn from the run's one random source."""


class Offtaker(_Strict):
    offtaker_id: OfftakerId
    mandate: Mandate
    traces: dict[str, Trace] = Field(
        default_factory=dict, description="workload id -> its load; unset: flat 0.5"
    )

    @model_validator(mode="after")
    def _traces_name_workloads(self) -> Offtaker:
        workloads = {w.workload_id for w in self.mandate.workloads}
        unknown = sorted(set(self.traces) - workloads)
        if unknown:
            raise ValueError(f"traces name workloads not in the mandate: {unknown}")
        return self


class Failure(_Strict):
    """A node goes down at ``day``/``hour`` and comes back ``repair_hours`` later; without a
    ``node_id`` the run's random source picks one that holds a contract then.

    The market records the outage from the failure, but the agents hear of it only
    ``detection_delay_minutes`` later, as monitoring on a real grid notices a dead node after
    a while: the contracts on it are down that long at least, which their SLA counts. At most
    59 minutes, so a failure is detected within its hour (the twin steps hour by hour and
    bills each hour after its agents have run)."""

    day: int = Field(ge=0, le=MAX_DAYS)
    hour: int = Field(default=0, ge=0, le=23)
    node_id: NodeId | None = None
    repair_hours: int = Field(default=4, ge=1, le=24 * MAX_DAYS)
    detection_delay_minutes: int = Field(default=15, ge=0, le=59)


class TopUp(_Strict):
    """An offtaker pays fiat (USD) at ``day``/``hour``; the treasury converts it to TFT."""

    day: int = Field(ge=0, le=MAX_DAYS)
    hour: int = Field(default=0, ge=0, le=23)
    offtaker_id: OfftakerId
    amount_usd: Decimal = Field(gt=0, le=Decimal(10) ** 9, decimal_places=2)


class PricePath(_Strict):
    """TFT per USD: a seeded daily random walk from ``start`` (each day times
    ``1 + U(-volatility, +volatility)``), kept within [``floor``, ``ceiling``]."""

    start: Decimal = Field(default=Decimal(100), gt=0, le=Decimal(10) ** 6)
    daily_volatility: Share = Decimal("0.03")
    floor: Decimal = Field(default=Decimal(1), gt=0)
    ceiling: Decimal = Field(default=Decimal(10) ** 6, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> PricePath:
        if not self.floor <= self.start <= self.ceiling:
            raise ValueError("start must lie between floor and ceiling")
        return self


class Split(_Strict):
    """How each bill is shared, in percent: farmer, farming pool, ThreeFold."""

    farmer: Percent = Decimal(60)
    pool: Percent = Decimal(20)
    threefold: Percent = Decimal(20)

    @model_validator(mode="after")
    def _sums(self) -> Split:
        if self.farmer + self.pool + self.threefold != 100:
            raise ValueError("farmer + pool + threefold must be 100")
        return self


class SimScenario(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    start: AwareDatetime = datetime(2026, 1, 1, tzinfo=UTC)
    fleet: FleetSpec
    offtakers: list[Offtaker] = Field(min_length=1, max_length=10_000)
    failures: list[Failure] = Field(default_factory=list, max_length=100_000)
    top_ups: list[TopUp] | None = Field(default=None, max_length=1_000_000)
    """None: each offtaker pays its monthly budget on day 0 and every 30 days after."""
    price: PricePath = Field(default_factory=PricePath)
    pricing: str = "genesis"
    split: Split = Field(default_factory=Split)
    sla: Sla | None = None
    """When set, the SLA of every farmer policy that does not state its own."""
    reference_usd_per_node_month: Decimal = Field(default=Decimal(20), ge=0)
    """Proof-of-capacity reference: what a node earned a month from minting, in USD."""

    @field_validator("pricing")
    @classmethod
    def _pricing(cls, value: str) -> str:
        if value not in SHIPPED_POLICIES:
            raise ValueError(f"unknown pricing policy {value!r}; known: {sorted(SHIPPED_POLICIES)}")
        return value

    @model_validator(mode="after")
    def _references(self) -> SimScenario:
        ids = [o.offtaker_id for o in self.offtakers]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"offtaker ids must be unique, repeated: {doubled}")
        unknown = sorted({t.offtaker_id for t in self.top_ups or []} - set(ids))
        if unknown:
            raise ValueError(f"top_ups name offtakers not in the scenario: {unknown}")
        return self


def _location(error: dict[str, object]) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"  # type: ignore[attr-defined]


def parse_scenario(data: object, source: str) -> SimScenario:
    try:
        return SimScenario.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{_location(e)}: {e['msg']}"  # type: ignore[arg-type]
            for e in error.errors(include_url=False)
        )
        raise ScenarioError(f"{source}: not a valid scenario: {problems}") from None


def load_scenario(path: Path) -> SimScenario:
    """The scenario in ``path`` (``.yaml``/``.yml`` or ``.json``), or :class:`ScenarioError`."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ScenarioError(f"{path}: a scenario is a .yaml, .yml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read it: {error}") from None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ScenarioError(f"{path}: not valid {suffix[1:].upper()}: {error}") from None
    return parse_scenario(data, str(path))
