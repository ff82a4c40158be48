"""The real Grid 3 (grid proxy) and Grid 4 (node registrar) payloads, and their mapping to the
market's commands.

Parsing is lenient: unknown keys are kept (``extra="allow"``), fields that only newer payloads
carry are optional, and a node whose used capacity exceeds its total (CPU overprovisioning)
is kept. Mapping is deterministic: ids and command ids are derived from the grid's own ids,
so importing the same farm or node twice is recognised as the same command.

Pure: imports only schemas, hero.domain, the stdlib and pydantic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hero.domain.node_health import node_status
from schemas import ChangeNodeStatus, Grid, NodeStatus, RegisterFarm, RegisterNode, Resources

__all__ = [
    "COUNTRY_CODES",
    "COUNTRY_NAMES",
    "REGION_OF_CODE",
    "Grid3Contract",
    "Grid3Farm",
    "Grid3Node",
    "Grid3PublicConfig",
    "Grid3PublicIp",
    "Grid3Resources",
    "Grid4Farm",
    "Grid4Location",
    "Grid4Node",
    "Grid4Resources",
    "farm_id",
    "grid3_farm_command",
    "grid3_node_command",
    "grid3_node_status",
    "grid4_farm_command",
    "grid4_node_command",
    "grid4_node_status",
    "locate",
    "node_id",
    "status_command",
]

#: ISO code -> English name, for the countries the generated fleets use and a few more.
COUNTRY_NAMES: dict[str, str] = {
    "BE": "Belgium", "NL": "Netherlands", "DE": "Germany", "FR": "France", "AT": "Austria",
    "CH": "Switzerland", "ES": "Spain", "IT": "Italy", "FI": "Finland", "SE": "Sweden",
    "GB": "United Kingdom", "IE": "Ireland", "PT": "Portugal", "PL": "Poland", "NO": "Norway",
    "DK": "Denmark", "CZ": "Czechia", "RO": "Romania", "BG": "Bulgaria", "SI": "Slovenia",
    "US": "United States", "CA": "Canada", "MX": "Mexico",
    "SG": "Singapore", "JP": "Japan", "IN": "India", "VN": "Vietnam", "TW": "Taiwan",
    "TH": "Thailand", "KR": "South Korea", "AE": "United Arab Emirates",
    "EG": "Egypt", "KE": "Kenya", "TZ": "Tanzania", "ZA": "South Africa", "GH": "Ghana",
    "UG": "Uganda", "NG": "Nigeria",
    "BR": "Brazil", "CL": "Chile", "AR": "Argentina", "CO": "Colombia",
    "AU": "Australia", "NZ": "New Zealand",
}  # fmt: skip

_REGION_CODES: dict[str, tuple[str, ...]] = {
    "europe": ("BE", "NL", "DE", "FR", "AT", "CH", "ES", "IT", "FI", "SE", "GB", "IE", "PT",
               "PL", "NO", "DK", "CZ", "RO", "BG", "SI"),
    "north-america": ("US", "CA", "MX"),
    "asia": ("SG", "JP", "IN", "VN", "TW", "TH", "KR", "AE"),
    "africa": ("EG", "KE", "TZ", "ZA", "GH", "UG", "NG"),
    "south-america": ("BR", "CL", "AR", "CO"),
    "oceania": ("AU", "NZ"),
}  # fmt: skip

#: ISO code -> the market's region name (the regions of ``hero.market.fleet.REGIONS``).
REGION_OF_CODE: dict[str, str] = {
    code: region for region, codes in _REGION_CODES.items() for code in codes
}
#: Lower-cased English name (and a few aliases) -> ISO code.
COUNTRY_CODES: dict[str, str] = {name.lower(): code for code, name in COUNTRY_NAMES.items()} | {
    "united states of america": "US",
    "usa": "US",
    "uk": "GB",
    "the netherlands": "NL",
    "czech republic": "CZ",
}

UNKNOWN = "unknown"


def locate(country: str | None) -> tuple[str, str]:
    """(country, region) for a grid's country field, a name ("Belgium") or an ISO code.

    A known country becomes its ISO code; an unknown one is kept as given (trimmed to what
    the commands accept); a missing one is ``unknown``, in the region ``unknown``.
    """
    text = (country or "").strip()
    code = text.upper() if text.upper() in REGION_OF_CODE else COUNTRY_CODES.get(text.lower())
    if code is not None:
        return code, REGION_OF_CODE[code]
    if len(text) < 2:
        return UNKNOWN, UNKNOWN
    return text[:64], UNKNOWN


def farm_id(grid: Grid, grid_farm_id: int) -> str:
    """The market's id of a grid's farm: ``g3-farm-12``, ``g4-farm-7``."""
    return f"{_prefix(grid)}-farm-{grid_farm_id}"


def node_id(grid: Grid, grid_node_id: int) -> str:
    """The market's id of a grid's node: ``g3-node-42``, ``g4-node-9``."""
    return f"{_prefix(grid)}-node-{grid_node_id}"


def _prefix(grid: Grid) -> str:
    return "g3" if grid == Grid.GRID3 else "g4"


class _Payload(BaseModel):
    """A grid payload: unknown keys are kept, names may come by alias or by field name."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


# -- Grid 3 (grid proxy) ----------------------------------------------------------------------


class Grid3Resources(_Payload):
    """``cru`` in cores; ``sru``, ``hru``, ``mru`` in bytes."""

    cru: int = Field(default=0, ge=0)
    sru: int = Field(default=0, ge=0)
    hru: int = Field(default=0, ge=0)
    mru: int = Field(default=0, ge=0)

    def as_resources(self) -> Resources:
        return Resources(cru=self.cru, mru=self.mru, sru=self.sru, hru=self.hru)


class Grid3PublicConfig(_Payload):
    ipv4: str = ""
    ipv6: str = ""
    domain: str = ""
    gw4: str = ""
    gw6: str = ""


class Grid3Node(_Payload):
    node_id: int = Field(alias="nodeId", ge=0)
    farm_id: int = Field(alias="farmId", ge=0)
    twin_id: int = Field(default=0, alias="twinId")
    country: str = ""
    city: str = ""
    grid_version: int | None = Field(default=None, alias="gridVersion")
    uptime: int = Field(default=0, description="seconds since the node booted")
    created: int | None = None
    updated_at: int | None = Field(default=None, alias="updatedAt")
    total_resources: Grid3Resources = Field(default_factory=Grid3Resources)
    used_resources: Grid3Resources = Field(default_factory=Grid3Resources)
    status: NodeStatus | None = None
    certification_type: str = Field(default="Diy", alias="certificationType")
    # newer fields, missing from older payloads
    dedicated: bool = False
    rent_contract_id: int = Field(default=0, alias="rentContractId")
    rented_by_twin_id: int = Field(default=0, alias="rentedByTwinId")
    extra_fee: int = Field(default=0, alias="extraFee", description="mUSD/month")
    price_usd: Decimal | None = None
    num_gpu: int = 0
    public_config: Grid3PublicConfig | None = Field(default=None, alias="publicConfig")

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        """Older proxies said ``online``/``offline``; an empty or unknown status is unknown."""
        if value is None or value == "":
            return None
        text = str(value).lower()
        text = {"online": "up", "offline": "down"}.get(text, text)
        return text if text in {s.value for s in NodeStatus} else None

    @field_validator("price_usd", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Any:
        """A JSON number arrives as a float: read it through its text, never as a binary float."""
        return str(value) if isinstance(value, float) else value

    @property
    def certified(self) -> bool:
        return self.certification_type.lower() == "certified"

    @property
    def overprovisioned(self) -> bool:
        """Used exceeds total somewhere (CPU overprovisioning, typically)."""
        t, u = self.total_resources, self.used_resources
        return u.cru > t.cru or u.mru > t.mru or u.sru > t.sru or u.hru > t.hru


class Grid3PublicIp(_Payload):
    ip: str
    gateway: str = ""
    contract_id: int = Field(default=0, alias="contractId")


class Grid3Farm(_Payload):
    farm_id: int = Field(alias="farmId", ge=0)
    name: str = ""
    twin_id: int = Field(default=0, alias="twinId")
    pricing_policy_id: int = Field(default=0, alias="pricingPolicyId")
    certification_type: str = Field(default="NotCertified", alias="certificationType")
    stellar_address: str = Field(default="", alias="stellarAddress")
    dedicated: bool = False
    public_ips: list[Grid3PublicIp] = Field(default_factory=list, alias="publicIps")

    @field_validator("public_ips", mode="before")
    @classmethod
    def _ips(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def certified(self) -> bool:
        return self.certification_type.lower() == "gold"


class Grid3ContractDetails(_Payload):
    node_id: int | None = Field(default=None, alias="nodeId")
    farm_id: int | None = None
    name: str | None = None


class Grid3Contract(_Payload):
    contract_id: int = Field(ge=0)
    twin_id: int = 0
    state: Literal["Created", "GracePeriod", "Deleted"] | str = "Created"
    created_at: int | None = None
    type: Literal["node", "rent", "name"] | str = "node"
    details: Grid3ContractDetails = Field(default_factory=Grid3ContractDetails)


# -- Grid 4 (node registrar) ------------------------------------------------------------------


class Grid4Resources(Grid3Resources):
    """Assumed in the same units as Grid 3 (what ZOS reports): cores and bytes."""


class Grid4Location(_Payload):
    country: str = ""
    city: str = ""
    longitude: str | float | None = None
    latitude: str | float | None = None


class Grid4Farm(_Payload):
    farm_id: int = Field(ge=0)
    farm_name: str = ""
    twin_id: int = 0
    stellar_address: str = ""
    dedicated: bool = False


class Grid4Node(_Payload):
    node_id: int = Field(ge=0)
    farm_id: int = Field(ge=0)
    twin_id: int = 0
    location: Grid4Location = Field(default_factory=Grid4Location)
    resources: Grid4Resources = Field(default_factory=Grid4Resources)
    secure_boot: bool = False
    virtualized: bool = False
    serial_number: str = ""
    last_seen: datetime | None = None
    online: bool = False
    approved: bool = False


# -- mapping to commands ----------------------------------------------------------------------


def _farm_location(countries: list[str]) -> tuple[str, str]:
    """A farm is where most of its nodes are (the grid gives farms no country)."""
    located = [locate(c) for c in countries]
    known = [c for c in located if c[0] != UNKNOWN]
    if not known:
        return UNKNOWN, UNKNOWN
    return max(sorted(set(known)), key=known.count)


def _farm_name(name: str, grid: Grid, grid_farm_id: int) -> str:
    name = name.strip()[:200]
    return name or f"{_prefix(grid)} farm {grid_farm_id}"


def grid3_farm_command(farm: Grid3Farm, nodes: Sequence[Grid3Node] = ()) -> RegisterFarm:
    """RegisterFarm for a Grid 3 farm; its country is that of most of its ``nodes``."""
    country, region = _farm_location([n.country for n in nodes if n.farm_id == farm.farm_id])
    return RegisterFarm(
        command_id=f"grid3:farm:{farm.farm_id}",
        farm_id=farm_id(Grid.GRID3, farm.farm_id),
        name=_farm_name(farm.name, Grid.GRID3, farm.farm_id),
        grid=Grid.GRID3,
        country=country,
        region=region,
        certified=farm.certified,
    )


def grid3_node_command(node: Grid3Node) -> RegisterNode:
    """RegisterNode with the node's total capacity (also when more than that is in use)."""
    country, region = locate(node.country)
    return RegisterNode(
        command_id=f"grid3:node:{node.node_id}",
        node_id=node_id(Grid.GRID3, node.node_id),
        farm_id=farm_id(Grid.GRID3, node.farm_id),
        grid=Grid.GRID3,
        country=country,
        region=region,
        total=node.total_resources.as_resources(),
        certified=node.certified,
    )


def grid3_node_status(node: Grid3Node, now: datetime | None = None) -> NodeStatus:
    """The proxy's status; a payload without one counts as up (it was listed).

    Given ``now`` and the node's last report (``updatedAt``), the grid's own rule decides
    between up and down (:func:`hero.domain.node_health.node_status`: down once reports are
    missing for more than 80 minutes), so a proxy answer cached past that still moves the
    node's replicas. Down and standby are the proxy's to say.
    """
    reported = node.status or NodeStatus.UP
    if now is None or node.updated_at is None or reported != NodeStatus.UP:
        return reported
    last_report = datetime.fromtimestamp(node.updated_at, UTC)
    return node_status(last_report, now)


def grid4_farm_command(farm: Grid4Farm, nodes: Sequence[Grid4Node] = ()) -> RegisterFarm:
    countries = [n.location.country for n in nodes if n.farm_id == farm.farm_id]
    country, region = _farm_location(countries)
    return RegisterFarm(
        command_id=f"grid4:farm:{farm.farm_id}",
        farm_id=farm_id(Grid.GRID4, farm.farm_id),
        name=_farm_name(farm.farm_name, Grid.GRID4, farm.farm_id),
        grid=Grid.GRID4,
        country=country,
        region=region,
        certified=False,
    )


def grid4_node_command(node: Grid4Node) -> RegisterNode:
    country, region = locate(node.location.country)
    return RegisterNode(
        command_id=f"grid4:node:{node.node_id}",
        node_id=node_id(Grid.GRID4, node.node_id),
        farm_id=farm_id(Grid.GRID4, node.farm_id),
        grid=Grid.GRID4,
        country=country,
        region=region,
        total=node.resources.as_resources(),
        certified=False,
    )


def grid4_node_status(node: Grid4Node) -> NodeStatus:
    """Online is up; offline is down (the registrar knows no standby)."""
    return NodeStatus.UP if node.online else NodeStatus.DOWN


def status_command(
    grid: Grid, grid_node_id: int, status: NodeStatus, version: int
) -> ChangeNodeStatus:
    """ChangeNodeStatus for a node whose stream is at ``version``: the id names the version,
    so the same change seen twice is one command, and a later change is a new one."""
    name = "grid3" if grid == Grid.GRID3 else "grid4"
    return ChangeNodeStatus(
        command_id=f"{name}:node:{grid_node_id}:status:{version}:{status.value}",
        node_id=node_id(grid, grid_node_id),
        status=status,
        reason=f"{name} reports the node {status.value}",
    )
