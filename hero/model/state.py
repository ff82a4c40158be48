"""The market's state as the log makes it: one typed structure, mutated in place by ``apply``.

Every reader of the market (the agents' view, the CLI's listings, the read models, the
gateway) reads this state or keeps an index over it; none folds the events a second time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

from hero.domain.billing import BillingContract
from hero.domain.ledger import Leg
from schemas import (
    DeclineReason,
    FarmerPolicy,
    Grid,
    Mandate,
    Money,
    NodeStatus,
    Resources,
    ScaleDecided,
    Sla,
    TransferKind,
    UtilizationSampled,
)

__all__ = [
    "Account",
    "AccountBook",
    "Contract",
    "ContractStatus",
    "Decline",
    "Farm",
    "HourUsage",
    "MarketState",
    "Migration",
    "Negotiation",
    "NegotiationStatus",
    "Node",
    "Offer",
    "OfferStatus",
    "Placement",
    "Replica",
    "SlaOutcome",
    "Suspension",
    "TransferLine",
    "Usage",
    "Workload",
]

NegotiationStatus = Literal["open", "awarded", "failed", "expired"]
OfferStatus = Literal["open", "withdrawn", "accepted", "released"]
ContractStatus = Literal["active", "suspended", "cancelled"]

_Vector = tuple[int, int, int, int, int]


def _vector(resources: Resources) -> _Vector:
    return (resources.cru, resources.mru, resources.sru, resources.hru, resources.ipv4)


def _sub_floored(total: _Vector, used: list[int]) -> _Vector:
    a, b, c, d, e = (max(t - u, 0) for t, u in zip(total, used, strict=True))
    return (a, b, c, d, e)


@dataclass(slots=True)
class Farm:
    farm_id: str
    grid: Grid
    region: str
    certified: bool
    name: str = ""
    country: str = ""
    policy: FarmerPolicy | None = None
    """The farm-wide policy; a node's own policy, when set, is in ``node_policies``."""
    node_policies: dict[str, FarmerPolicy] = field(default_factory=dict)
    node_ids: list[str] = field(default_factory=list)

    def policy_for(self, node_id: str) -> FarmerPolicy | None:
        return self.node_policies.get(node_id, self.policy)


@dataclass(slots=True)
class Node:
    node_id: str
    farm_id: str
    grid: Grid
    region: str
    certified: bool
    uptime_pct: Decimal
    total: Resources
    country: str = ""
    status: NodeStatus = NodeStatus.UP
    holds: dict[str, tuple[Resources, datetime]] = field(default_factory=dict)
    """hold id -> (resources, expires_at): every hold recorded and not yet released."""
    contracts: dict[str, Resources] = field(default_factory=dict)
    """The live contracts on the node (created, not cancelled)."""
    # Free capacity as plain integers, valid until the soonest live hold expires: searching
    # thousands of nodes per decision must not rebuild pydantic models each time.
    _free: _Vector | None = None
    _valid_until: datetime | None = None

    def changed(self) -> None:
        self._free = None

    def _free_vector(self, now: datetime) -> _Vector:
        if self._free is None or (self._valid_until is not None and self._valid_until <= now):
            used = [0, 0, 0, 0, 0]
            live = [(r, t) for r, t in self.holds.values() if t > now]
            for resources in [r for r, _ in live] + list(self.contracts.values()):
                for i, amount in enumerate(_vector(resources)):
                    used[i] += amount
            self._free = _sub_floored(_vector(self.total), used)
            self._valid_until = min((t for _, t in live), default=None)
        return self._free

    def fits(self, resources: Resources, now: datetime) -> bool:
        """Whether ``resources`` fit in what is free at ``now`` (expired holds count free)."""
        free = self._free_vector(now)
        return all(a <= f for a, f in zip(_vector(resources), free, strict=True))

    def free(self, now: datetime) -> Resources:
        cru, mru, sru, hru, ipv4 = self._free_vector(now)
        return Resources(cru=cru, mru=mru, sru=sru, hru=hru, ipv4=ipv4)

    def expired_holds(self, now: datetime) -> list[str]:
        return sorted(h for h, (_, expires_at) in self.holds.items() if expires_at <= now)

    @property
    def held(self) -> Resources:
        """Every recorded hold, expired or not: until released, the store counts it."""
        return Resources.sum(r for r, _ in self.holds.values())

    @property
    def committed(self) -> Resources:
        return Resources.sum(self.contracts.values())


@dataclass(slots=True)
class Offer:
    offer_id: str
    negotiation_id: str
    farm_id: str
    node_id: str
    hold_id: str
    grid: Grid
    region: str
    resources: Resources
    price_hour: Money
    term_hours: int
    sla: Sla
    firm: bool
    """As made: False when the offer awaited the farmer's approval."""
    expires_at: datetime
    approved: bool = False
    status: OfferStatus = "open"
    reason: str = ""
    contract_id: str | None = None
    counter: Money | None = None
    """The offtaker's counter price, while one is pending or after it was accepted."""
    counter_accepted: bool | None = None


@dataclass(frozen=True, slots=True)
class Decline:
    negotiation_id: str
    farm_id: str
    node_id: str | None
    reasons: tuple[DeclineReason, ...]
    detail: str


@dataclass(slots=True)
class Negotiation:
    negotiation_id: str
    offtaker_id: str
    workload_id: str
    replicas: int
    resources: Resources
    term_hours: int
    deadline: datetime
    invited: frozenset[str]
    grids: tuple[Grid, ...] = ()
    regions: tuple[str, ...] = ()
    max_price_cu_hour: Money | None = None
    farms: set[str] = field(default_factory=set)
    """The farms that answered (offered or declined)."""
    offers: list[str] = field(default_factory=list)
    declines: int = 0
    declined: list[Decline] = field(default_factory=list)
    """The declines, in the order they came (the read model lists them)."""
    contracts: list[str] = field(default_factory=list)
    """Contracts of accepted offers, in acceptance order; a withdrawn offer's leaves."""
    status: NegotiationStatus = "open"
    reason: str = ""

    @property
    def open(self) -> bool:
        return self.status == "open"


@dataclass(slots=True)
class Contract:
    contract_id: str
    negotiation_id: str
    offer_id: str
    hold_id: str
    offtaker_id: str
    workload_id: str
    farm_id: str
    node_id: str
    grid: Grid
    resources: Resources
    price_hour: Money
    term_hours: int
    sla: Sla
    starts_at: datetime
    status: ContractStatus = "active"
    reason: str = ""
    grace_ends_at: datetime | None = None
    ended_at: datetime | None = None
    """When the first cancellation was recorded."""
    billed: Money | None = None
    """What the contract's hours billed so far (TFT)."""
    billed_hours: int = 0

    @property
    def live(self) -> bool:
        return self.status != "cancelled"


@dataclass(slots=True)
class Replica:
    replica_id: str
    offtaker_id: str
    workload_id: str
    contract_id: str
    farm_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Placement:
    """Why a replica went where it did: the weighted criteria and their total, and the
    owners it names (a contract's read model shows them before its ``ContractCreated``)."""

    replica_id: str
    scores: dict[str, Decimal]
    total: Decimal | None
    price_cu_hour: Money | None
    offtaker_id: str
    workload_id: str
    farm_id: str
    node_id: str
    grid: Grid


@dataclass(frozen=True, slots=True)
class Suspension:
    """The notice of an unpaid hour: kept until the contract resumes, even past its end."""

    unpaid_hour: datetime
    grace_ends_at: datetime


@dataclass(frozen=True, slots=True)
class Migration:
    moved_at: datetime
    replica_id: str
    from_node_id: str
    to_node_id: str
    from_contract_id: str
    to_contract_id: str
    reason: str


@dataclass(slots=True)
class Workload:
    """One offtaker's workload: named by a mandate, a contract, a decision or a move."""

    offtaker_id: str
    workload_id: str
    contracts: dict[str, None] = field(default_factory=dict)
    """Every contract made for it, in the order they were created (a dict: one is looked up
    on each creation, and a workload may have thousands)."""
    decisions: list[ScaleDecided] = field(default_factory=list)
    migrations: list[Migration] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SlaOutcome:
    contract_id: str
    offtaker_id: str
    farm_id: str
    uptime_pct: Decimal
    hours_down: Decimal
    met: bool
    penalty: Money
    promised_pct: Decimal
    period_hours: Decimal
    node_id: str
    started_at: datetime
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class HourUsage:
    """One hour's usage fact (``UsageRecorded``): what billing prices a metered hour from."""

    cu_hours: Decimal
    su_hours: Decimal
    nu_gb: Decimal
    seconds: int


@dataclass(slots=True)
class Usage:
    """A contract's usage facts, one per hour: the first recorded stands, the one billing
    prices. The store takes one per contract-hour (its command id); a repeat written under
    another id changes neither the bill nor what the views show."""

    hours: dict[datetime, HourUsage] = field(default_factory=dict)

    @property
    def cu_hours(self) -> Decimal:
        return sum((hour.cu_hours for hour in self.hours.values()), Decimal(0))


@dataclass(slots=True)
class Account:
    account_id: str
    currency: str
    balance: Decimal = Decimal(0)
    transfers: int = 0


#: How many of an account's latest transfers its book keeps.
LAST_TRANSFERS = 20


@dataclass(frozen=True, slots=True)
class TransferLine:
    """One transfer as one of its accounts sees it."""

    transfer_id: str
    kind: TransferKind
    credit: bool
    amount: Decimal
    counterparty: str
    reference: str
    at: datetime
    position: int


@dataclass(slots=True)
class AccountBook:
    """What an account's read model shows beside its balance: the legs naming it that wait
    for their pair, the unsound transfers naming it (transfer id -> problem code), and its
    latest transfers, newest first (at most :data:`LAST_TRANSFERS`)."""

    waiting: dict[str, Leg] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    lines: deque[TransferLine] = field(default_factory=lambda: deque(maxlen=LAST_TRANSFERS))


@dataclass(slots=True)
class MarketState:
    """Everything the log says about the market; ``position`` is the newest position applied."""

    position: int = 0
    farms: dict[str, Farm] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    negotiations: dict[str, Negotiation] = field(default_factory=dict)
    offers: dict[str, Offer] = field(default_factory=dict)
    declines: list[Decline] = field(default_factory=list)
    contracts: dict[str, Contract] = field(default_factory=dict)
    """Every contract ever made: an ended one still names its owner (``status`` says)."""
    mandates: dict[str, Mandate] = field(default_factory=dict)
    samples: dict[str, UtilizationSampled] = field(default_factory=dict)
    """The newest utilization sample of each live contract (a sample may come first)."""
    replicas: dict[str, Replica] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    """contract id -> how its replica was placed."""
    workloads: dict[tuple[str, str], Workload] = field(default_factory=dict)
    """(offtaker, workload) -> the workload; kept when a new mandate drops it."""
    scale: dict[tuple[str, str], int] = field(default_factory=dict)
    """(offtaker, workload) -> the replicas its autoscaler last asked for."""
    usage: dict[str, Usage] = field(default_factory=dict)
    sla_outcomes: dict[str, SlaOutcome] = field(default_factory=dict)
    suspensions: dict[str, Suspension] = field(default_factory=dict)
    """contract id -> its pending suspension notice (any contract's, created or not yet)."""
    accounts: dict[str, Account] = field(default_factory=dict)
    waiting_legs: dict[str, Leg] = field(default_factory=dict)
    """transfer id -> the first leg seen of a transfer whose pair has not come yet."""
    unsound_transfers: dict[str, str] = field(default_factory=dict)
    """transfer id -> why it moves no money (hero.domain.ledger.LegProblem)."""
    unsound_reasons: dict[str, str] = field(default_factory=dict)
    """transfer id -> the reason in words behind its code in ``unsound_transfers``: the
    operator's text (``hero accounts``), which may name other tenants' accounts, so no read
    model shows it to an account's owner."""
    posted_transfers: set[str] = field(default_factory=set)
    """The transfers whose two legs were matched: a further leg is a third one."""
    books: dict[str, AccountBook] = field(default_factory=dict)
    """account id -> its book: every well-formed account a leg names has one."""
    billing: dict[str, BillingContract] = field(default_factory=dict)
    """contract id -> what billing reads of it: the intervals it ran, the hours billed, its
    suspension. Made by the first ``ContractCreated``; billing reads the store, in whose
    order nothing of a contract comes before its creation, so what does is not kept."""
    sla_paid: set[str] = field(default_factory=set)
    """Contracts whose SLA penalty has a refund leg recorded (``TransferKind.SLA_PENALTY``)."""
    low_balance: set[str] = field(default_factory=set)
    """Accounts warned of a low balance (``BalanceLow``) and not credited since."""
    early_policies: dict[str, list[tuple[str | None, FarmerPolicy]]] = field(default_factory=dict)
    """Policies of farms not registered yet: Kafka orders a farm's stream and its nodes'
    streams independently, so a policy may arrive before its farm."""
    early_cancellations: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    """contract id -> (reason, when) of a cancellation recorded before the contract: the
    contract is born cancelled (a node's stream and a contract's are ordered apart)."""
    early_status: dict[str, NodeStatus] = field(default_factory=dict)
    """The status of nodes not registered yet (read by the views of their contracts), taken
    by the node when its registration comes."""
    early_nodes: dict[str, list[str]] = field(default_factory=dict)
    """farm id -> the nodes registered for it before the farm itself (a farm's stream and
    its nodes' are ordered apart), taken by the farm when its registration comes: a new farm
    no longer scans every node to find them."""

    def node_status(self, node_id: str) -> NodeStatus:
        node = self.nodes.get(node_id)
        return node.status if node is not None else self.early_status.get(node_id, NodeStatus.UP)

    def farm_nodes(self, farm_id: str) -> list[Node]:
        farm = self.farms.get(farm_id)
        return [self.nodes[n] for n in farm.node_ids if n in self.nodes] if farm else []

    def book(self, account_id: str) -> AccountBook:
        """The account's book, opened on first mention."""
        found = self.books.get(account_id)
        if found is None:
            found = self.books[account_id] = AccountBook()
        return found

    def workload(self, offtaker_id: str, workload_id: str) -> Workload:
        """The workload, registered on first mention."""
        key = (offtaker_id, workload_id)
        found = self.workloads.get(key)
        if found is None:
            found = self.workloads[key] = Workload(offtaker_id, workload_id)
        return found

    def live_contracts(self) -> list[Contract]:
        """Live contracts (created, not cancelled), oldest first."""
        return [c for c in self.contracts.values() if c.live]
