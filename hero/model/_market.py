"""How each reservations event changes the model: farms, nodes, negotiations, contracts."""

from __future__ import annotations

from hero.domain.billing import BillingContract
from hero.model.state import (
    Contract,
    Decline,
    Farm,
    MarketState,
    Negotiation,
    NegotiationStatus,
    Node,
    Offer,
    Suspension,
)
from schemas import (
    CapacityHeld,
    ContractCancelled,
    ContractCreated,
    ContractResumed,
    ContractSuspended,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    Envelope,
    FarmerPolicy,
    FarmerPolicySet,
    FarmRegistered,
    HoldExpired,
    HoldReleased,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    NodeRegistered,
    NodeStatus,
    NodeStatusChanged,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    RfqIssued,
)

# -- farms and nodes --------------------------------------------------------------------------


def _set_policy(farm: Farm, node_id: str | None, policy: FarmerPolicy) -> None:
    if node_id is None:
        farm.policy = policy
    else:
        farm.node_policies[node_id] = policy


def farm_registered(state: MarketState, envelope: Envelope, event: FarmRegistered) -> None:
    # A farm registered again keeps its policies and nodes; only what it describes changes.
    # (The CLI's listing used to start it afresh, losing its policy mode and node count.)
    farm = state.farms.get(event.farm_id)
    if farm is not None:
        farm.name, farm.grid, farm.country = event.name, event.grid, event.country
        farm.region, farm.certified = event.region, event.certified
        return
    farm = Farm(
        event.farm_id,
        event.grid,
        event.region,
        event.certified,
        name=event.name,
        country=event.country,
    )
    # Its nodes may have come first (their streams are ordered apart from the farm's).
    farm.node_ids = sorted(state.early_nodes.pop(event.farm_id, ()))
    state.farms[event.farm_id] = farm
    for node_id, policy in state.early_policies.pop(event.farm_id, []):
        _set_policy(farm, node_id, policy)


def farmer_policy_set(state: MarketState, envelope: Envelope, event: FarmerPolicySet) -> None:
    farm = state.farms.get(event.farm_id)
    if farm is None:
        state.early_policies.setdefault(event.farm_id, []).append((event.node_id, event.policy))
    else:
        _set_policy(farm, event.node_id, event.policy)


def node_registered(state: MarketState, envelope: Envelope, event: NodeRegistered) -> None:
    node = state.nodes.get(event.node_id)
    if node is None:
        node = state.nodes[event.node_id] = Node(
            event.node_id,
            event.farm_id,
            event.grid,
            event.region,
            event.certified,
            event.uptime_pct,
            event.total,
            country=event.country,
            status=state.early_status.pop(event.node_id, NodeStatus.UP),
        )
        if event.farm_id not in state.farms:  # the farm finds it when it comes
            state.early_nodes.setdefault(event.farm_id, []).append(event.node_id)
    else:
        # Registered again (a grid sync): its holds, contracts and status stay; the CLI's
        # listing and the agents' view used to drop them, and count the node twice.
        node.grid, node.region, node.country = event.grid, event.region, event.country
        node.certified, node.uptime_pct, node.total = event.certified, event.uptime_pct, event.total
        node.changed()
    farm = state.farms.get(event.farm_id)
    if farm is not None and event.node_id not in farm.node_ids:
        farm.node_ids.append(event.node_id)


def node_status_changed(state: MarketState, envelope: Envelope, event: NodeStatusChanged) -> None:
    if (node := state.nodes.get(event.node_id)) is not None:
        node.status = event.status
    else:
        state.early_status[event.node_id] = event.status


def capacity_held(state: MarketState, envelope: Envelope, event: CapacityHeld) -> None:
    if (node := state.nodes.get(event.node_id)) is not None:
        node.holds[event.hold_id] = (event.resources, event.expires_at)
        node.changed()


def hold_ended(state: MarketState, envelope: Envelope, event: HoldReleased | HoldExpired) -> None:
    if (node := state.nodes.get(event.node_id)) is not None:
        node.holds.pop(event.hold_id, None)
        node.changed()


# -- contracts ----------------------------------------------------------------------------------


def contract_created(state: MarketState, envelope: Envelope, event: ContractCreated) -> None:
    contract = state.contracts[event.contract_id] = Contract(
        contract_id=event.contract_id,
        negotiation_id=event.negotiation_id,
        offer_id=event.offer_id,
        hold_id=event.hold_id,
        offtaker_id=event.offtaker_id,
        workload_id=event.workload_id,
        farm_id=event.farm_id,
        node_id=event.node_id,
        grid=event.grid,
        resources=event.resources,
        price_hour=event.price_hour,
        term_hours=event.term_hours,
        sla=event.sla,
        starts_at=event.starts_at,
    )
    state.workload(event.offtaker_id, event.workload_id).contracts.setdefault(event.contract_id)
    state.billing.setdefault(event.contract_id, BillingContract(event))
    early = state.early_cancellations.pop(event.contract_id, None)
    if early is not None:
        contract.status, contract.reason = "cancelled", early[0]
        contract.ended_at = early[1]
    if (node := state.nodes.get(event.node_id)) is not None:
        node.holds.pop(event.hold_id, None)
        if early is None:
            node.contracts[event.contract_id] = event.resources
        node.changed()


def contract_hold_taken(state: MarketState, envelope: Envelope, event: ContractCreated) -> None:
    """What a contract's creation does to its node's holds, and nothing else: its hold is
    gone (as :func:`contract_created` does). The holds part's share of a ContractCreated
    (hero.model.parts.HOLDS)."""
    if (node := state.nodes.get(event.node_id)) is not None:
        node.holds.pop(event.hold_id, None)
        node.changed()


def contract_cancelled(state: MarketState, envelope: Envelope, event: ContractCancelled) -> None:
    state.samples.pop(event.contract_id, None)
    if (billed := state.billing.get(event.contract_id)) is not None:
        billed.cancel(envelope.occurred_at)  # each cancellation: only ever shortens its run
    contract = state.contracts.get(event.contract_id)
    if contract is None:
        state.early_cancellations.setdefault(
            event.contract_id, (event.reason, envelope.occurred_at)
        )
    elif contract.ended_at is None:
        # The first cancellation ends it; a repeated one (another writer's) changes nothing.
        contract.status, contract.reason, contract.grace_ends_at = "cancelled", event.reason, None
        contract.ended_at = envelope.occurred_at
    if (node := state.nodes.get(event.node_id)) is not None:
        node.contracts.pop(event.contract_id, None)
        node.changed()


def contract_suspended(state: MarketState, envelope: Envelope, event: ContractSuspended) -> None:
    # The notice is kept whatever the contract's status: its read model shows it even after
    # the contract ended, or before its creation was read.
    state.suspensions[event.contract_id] = Suspension(event.unpaid_hour, event.grace_ends_at)
    if (billed := state.billing.get(event.contract_id)) is not None:
        billed.suspend(envelope.occurred_at, event.grace_ends_at)
    contract = state.contracts.get(event.contract_id)
    if contract is not None and contract.live:
        contract.status, contract.grace_ends_at = "suspended", event.grace_ends_at


def contract_resumed(state: MarketState, envelope: Envelope, event: ContractResumed) -> None:
    state.suspensions.pop(event.contract_id, None)
    if (billed := state.billing.get(event.contract_id)) is not None:
        billed.resume(envelope.occurred_at)
    contract = state.contracts.get(event.contract_id)
    if contract is not None and contract.live:
        contract.status, contract.grace_ends_at = "active", None


# -- negotiations ------------------------------------------------------------------------------


def rfq_issued(state: MarketState, envelope: Envelope, event: RfqIssued) -> None:
    state.negotiations[event.negotiation_id] = Negotiation(
        negotiation_id=event.negotiation_id,
        offtaker_id=event.offtaker_id,
        workload_id=event.workload_id,
        replicas=event.replicas,
        resources=event.resources,
        term_hours=event.term_hours,
        deadline=event.deadline,
        invited=frozenset(event.invited_farms),
        grids=tuple(event.grids),
        regions=tuple(event.regions),
        max_price_cu_hour=event.max_price_cu_hour,
    )


def offer_made(state: MarketState, envelope: Envelope, event: OfferMade) -> None:
    state.offers[event.offer_id] = Offer(
        offer_id=event.offer_id,
        negotiation_id=event.negotiation_id,
        farm_id=event.farm_id,
        node_id=event.node_id,
        hold_id=event.hold_id,
        grid=event.grid,
        region=event.region,
        resources=event.resources,
        price_hour=event.price_hour,
        term_hours=event.term_hours,
        sla=event.sla,
        firm=event.firm,
        expires_at=event.expires_at,
    )
    if (nego := state.negotiations.get(event.negotiation_id)) is not None:
        nego.farms.add(event.farm_id)
        nego.offers.append(event.offer_id)


def offer_declined(state: MarketState, envelope: Envelope, event: OfferDeclined) -> None:
    decline = Decline(
        event.negotiation_id, event.farm_id, event.node_id, tuple(event.reasons), event.detail
    )
    state.declines.append(decline)
    if (nego := state.negotiations.get(event.negotiation_id)) is not None:
        nego.farms.add(event.farm_id)
        nego.declines += 1
        nego.declined.append(decline)


def offer_approved(state: MarketState, envelope: Envelope, event: OfferApproved) -> None:
    if (offer := state.offers.get(event.offer_id)) is not None:
        offer.approved = True


def offer_withdrawn(state: MarketState, envelope: Envelope, event: OfferWithdrawn) -> None:
    offer = state.offers.get(event.offer_id)
    if offer is None:
        return
    nego = state.negotiations.get(event.negotiation_id)
    if nego is not None and offer.contract_id in nego.contracts:
        nego.contracts.remove(offer.contract_id)
    offer.status, offer.reason, offer.contract_id = "withdrawn", event.reason, None


def offer_accepted(state: MarketState, envelope: Envelope, event: OfferAccepted) -> None:
    offer = state.offers.get(event.offer_id)
    if offer is None:
        return
    # Accepted at the price in the acceptance: a counter may have moved it from the offer's.
    # (The negotiations read model showed this price; the CLI's listing showed the first.)
    offer.status, offer.contract_id, offer.price_hour = (
        "accepted",
        event.contract_id,
        event.price_hour,
    )
    if (nego := state.negotiations.get(event.negotiation_id)) is not None:
        nego.contracts.append(event.contract_id)


def counter_offered(state: MarketState, envelope: Envelope, event: CounterOffered) -> None:
    if (offer := state.offers.get(event.offer_id)) is not None:
        offer.counter, offer.counter_accepted = event.price_hour, None


def counter_answered(
    state: MarketState, envelope: Envelope, event: CounterAccepted | CounterRejected
) -> None:
    if (offer := state.offers.get(event.offer_id)) is not None:
        offer.counter_accepted = isinstance(event, CounterAccepted)


def negotiation_closed(
    state: MarketState,
    envelope: Envelope,
    event: NegotiationAwarded | NegotiationFailed | NegotiationExpired,
) -> None:
    for offer_id in event.released_offers:
        offer = state.offers.get(offer_id)
        if offer is not None and offer.status == "open":
            offer.status = "released"
    nego = state.negotiations.get(event.negotiation_id)
    if nego is None:
        return
    status: NegotiationStatus
    match event:
        case NegotiationAwarded():
            status, reason = "awarded", ""
        case NegotiationFailed():
            status, reason = "failed", event.reason
        case NegotiationExpired():
            status, reason = "expired", "offers awaiting approval expired"
    nego.status, nego.reason = status, reason
