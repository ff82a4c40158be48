"""The node capacity aggregate: free, held and committed resources of one node.

Invariant: held + committed never exceeds the node's total, whatever the order of commands.
A hold ends in exactly one way: committed into a contract, released, or expired.

The node also keeps the terms of its live contracts and its recent outages, so that ending a
contract records, in the same append, how the node kept the contract's SLA
(:func:`hero.domain.sla.sla_outcome`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from hero.domain.billing import hourly_usd
from hero.domain.errors import Rejected
from hero.domain.sla import Outage, sla_outcome
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    Event,
    Grid,
    HoldExpired,
    HoldReleased,
    Money,
    NodeRegistered,
    NodeStatusChanged,
    Resources,
)
from schemas.catalogue.common import NodeStatus

__all__ = ["MAX_OUTAGES", "Hold", "NodeState", "evolve", "fold", "node_stream"]

#: The newest outages kept. Only a node that flaps this often during its oldest live
#: contract loses any, and those are the oldest: the cap keeps the aggregate small.
MAX_OUTAGES = 256


def node_stream(node_id: str) -> str:
    return f"node-{node_id}"


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    negotiation_id: str
    resources: Resources
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NodeState:
    node_id: str = ""
    farm_id: str = ""
    grid: Grid = Grid.GRID3
    region: str = ""
    country: str = ""
    certified: bool = False
    uptime_pct: Decimal = Decimal(0)
    total: Resources = field(default_factory=Resources)
    status: NodeStatus = NodeStatus.UP
    holds: dict[str, Hold] = field(default_factory=dict)
    terms: dict[str, ContractCreated] = field(default_factory=dict)
    """The live contracts, by id, as they were created."""
    ended_holds: frozenset[str] = frozenset()
    outages: tuple[Outage, ...] = ()
    """(left UP, back UP or None), oldest first: those that can still count against a live
    contract, at most :data:`MAX_OUTAGES`."""

    @property
    def registered(self) -> bool:
        return bool(self.node_id)

    @property
    def contracts(self) -> dict[str, Resources]:
        """The live contracts' resources, by contract id."""
        return {contract_id: terms.resources for contract_id, terms in self.terms.items()}

    @property
    def held(self) -> Resources:
        return Resources.sum(hold.resources for hold in self.holds.values())

    @property
    def committed(self) -> Resources:
        return Resources.sum(terms.resources for terms in self.terms.values())

    @property
    def used(self) -> Resources:
        return self.held + self.committed

    def free(self, now: datetime | None = None) -> Resources:
        """What is left; holds past their deadline count as free when ``now`` is given."""
        live = [h.resources for h in self.holds.values() if now is None or h.expires_at > now]
        return self.total.minus_floored(Resources.sum(live) + self.committed)

    # -- decisions -------------------------------------------------------------------------

    def register(self, event: NodeRegistered) -> list[Event]:
        if self.registered:
            raise Rejected("already_registered", f"node {self.node_id} is registered")
        return [event]

    def change_status(
        self, status: NodeStatus, reason: str, now: datetime | None = None
    ) -> list[Event]:
        """``now`` is recorded as ``changed_at``: the SLA counts downtime from it."""
        self._require_registered()
        if status == self.status:
            return []
        events: list[Event] = [
            NodeStatusChanged(
                node_id=self.node_id,
                status=status,
                previous=self.status,
                reason=reason,
                changed_at=now,
            )
        ]
        if status != NodeStatus.UP:  # no new contract can start on it: its holds end now
            events += [
                HoldReleased(node_id=self.node_id, hold_id=h, reason=f"node {status.value}")
                for h in sorted(self.holds)
            ]
        return events

    def expire(self, now: datetime) -> list[Event]:
        return [
            HoldExpired(node_id=self.node_id, hold_id=hold.hold_id)
            for hold in sorted(self.holds.values(), key=lambda h: h.hold_id)
            if hold.expires_at <= now
        ]

    def hold(
        self,
        hold_id: str,
        negotiation_id: str,
        resources: Resources,
        expires_at: datetime,
        now: datetime,
    ) -> list[Event]:
        self._require_registered()
        if hold_id in self.holds or hold_id in self.ended_holds:
            raise Rejected("duplicate_hold", f"hold {hold_id} exists on node {self.node_id}")
        if self.status != NodeStatus.UP:
            raise Rejected("node_unavailable", f"node {self.node_id} is {self.status.value}")
        if expires_at <= now:
            raise Rejected("expired", f"hold {hold_id} would expire before it starts")
        if not resources.fits_in(self.free(now)):
            raise Rejected(
                "insufficient_capacity",
                f"node {self.node_id} has {self.free(now)} free, {resources} asked",
            )
        held = CapacityHeld(
            node_id=self.node_id,
            hold_id=hold_id,
            negotiation_id=negotiation_id,
            resources=resources,
            expires_at=expires_at,
        )
        return [*self.expire(now), held]

    def release(self, hold_id: str, reason: str) -> list[Event]:
        if hold_id not in self.holds:
            return []  # already ended: releasing twice changes nothing
        return [HoldReleased(node_id=self.node_id, hold_id=hold_id, reason=reason)]

    def commit(self, contract: ContractCreated, now: datetime) -> list[Event]:
        self._require_registered()
        if contract.contract_id in self.terms:
            raise Rejected("duplicate_contract", f"contract {contract.contract_id} exists")
        hold = self.holds.get(contract.hold_id)
        if hold is None:
            raise Rejected("hold_ended", f"hold {contract.hold_id} has ended")
        if hold.expires_at <= now:
            raise Rejected("hold_expired", f"hold {contract.hold_id} expired at {hold.expires_at}")
        if self.status != NodeStatus.UP:
            raise Rejected("node_unavailable", f"node {self.node_id} is {self.status.value}")
        if contract.resources != hold.resources:
            raise Rejected("resources_mismatch", "a contract takes exactly what was held")
        return [contract]

    def cancel(
        self,
        contract_id: str,
        reason: str,
        now: datetime | None = None,
        price_hour: Callable[[ContractCreated], Money] = hourly_usd,
    ) -> list[Event]:
        """End a live contract; with ``now``, also its SLA outcome when the node was down
        during its life. ``price_hour`` is what an hour of the contract is billed, the base
        of the penalty. Without ``now`` the SLA is not judged."""
        terms = self.terms.get(contract_id)
        if terms is None:
            return []
        events: list[Event] = [
            ContractCancelled(contract_id=contract_id, node_id=self.node_id, reason=reason)
        ]
        if now is not None:
            outcome = sla_outcome(terms, self.outages, now, price_hour(terms))
            if outcome is not None:
                events.append(outcome)
        return events

    def _require_registered(self) -> None:
        if not self.registered:
            raise Rejected("unknown_node", "node is not registered")


def evolve(state: NodeState, event: Event) -> NodeState:
    match event:
        case NodeRegistered():
            return replace(
                state,
                node_id=event.node_id,
                farm_id=event.farm_id,
                grid=event.grid,
                region=event.region,
                country=event.country,
                certified=event.certified,
                uptime_pct=event.uptime_pct,
                total=event.total,
            )
        case NodeStatusChanged():
            return replace(state, status=event.status, outages=_outages_after(state, event))
        case CapacityHeld():
            hold = Hold(event.hold_id, event.negotiation_id, event.resources, event.expires_at)
            return replace(state, holds={**state.holds, event.hold_id: hold})
        case HoldReleased() | HoldExpired():
            return _end_hold(state, event.hold_id)
        case ContractCreated():
            ended = _end_hold(state, event.hold_id)
            return _with_terms(ended, {**ended.terms, event.contract_id: event})
        case ContractCancelled():
            terms = {k: v for k, v in state.terms.items() if k != event.contract_id}
            return _with_terms(state, terms)
    return state


def fold(events: list[Event], state: NodeState | None = None) -> NodeState:
    current = state or NodeState()
    for event in events:
        current = evolve(current, event)
    return current


def _end_hold(state: NodeState, hold_id: str) -> NodeState:
    holds = {k: v for k, v in state.holds.items() if k != hold_id}
    return replace(state, holds=holds, ended_holds=state.ended_holds | {hold_id})


def _with_terms(state: NodeState, terms: dict[str, ContractCreated]) -> NodeState:
    return replace(state, terms=terms, outages=_relevant(state.outages, terms))


def _outages_after(state: NodeState, event: NodeStatusChanged) -> tuple[Outage, ...]:
    """Leaving UP opens an outage at ``changed_at``; coming back closes it. A change without
    ``changed_at`` (recorded before the market kept it) says nothing about when."""
    at = event.changed_at
    if at is None:
        return state.outages
    if state.status == NodeStatus.UP and event.status != NodeStatus.UP:
        return _relevant((*state.outages, (at, None)), state.terms)
    if state.status != NodeStatus.UP and event.status == NodeStatus.UP and state.outages:
        *before, (down, up) = state.outages
        if up is None:
            return _relevant((*before, (down, max(down, at))), state.terms)
    return state.outages


def _relevant(
    outages: tuple[Outage, ...], terms: Mapping[str, ContractCreated]
) -> tuple[Outage, ...]:
    """The open outage, and those that ended after the oldest live contract started: one
    that ended before cannot count against any contract, live or yet to come."""
    oldest = min((t.starts_at for t in terms.values()), default=None)
    kept = tuple(
        (down, up) for down, up in outages if up is None or (oldest is not None and up > oldest)
    )
    return kept[-MAX_OUTAGES:]
