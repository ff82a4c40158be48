"""How the money, usage, scaling and policy events change the model."""

from __future__ import annotations

from hero.domain.ledger import Leg, account_of_stream, match_leg
from hero.model.state import Account, MarketState, Migration, Placement, Replica, SlaOutcome, Usage
from schemas import (
    Envelope,
    OfftakerMandateSet,
    ReplicaMigrated,
    ReplicaPlaced,
    ScaleDecided,
    SlaOutcomeRecorded,
    TransferPosted,
    UsageBilled,
    UsageRecorded,
    UtilizationSampled,
)


def mandate_set(state: MarketState, envelope: Envelope, event: OfftakerMandateSet) -> None:
    state.mandates[event.offtaker_id] = event.mandate
    for spec in event.mandate.workloads:
        state.workload(event.offtaker_id, spec.workload_id)


def utilization_sampled(state: MarketState, envelope: Envelope, event: UtilizationSampled) -> None:
    # Samples come straight from Kafka and may arrive before their contract's record
    # (relayed from the store): kept anyway, read once it arrives.
    newest = state.samples.get(event.contract_id)
    if newest is None or newest.sampled_at <= event.sampled_at:
        state.samples[event.contract_id] = event


def scale_decided(state: MarketState, envelope: Envelope, event: ScaleDecided) -> None:
    state.scale[(event.offtaker_id, event.workload_id)] = event.desired_replicas
    state.workload(event.offtaker_id, event.workload_id).decisions.append(event)


def replica_placed(state: MarketState, envelope: Envelope, event: ReplicaPlaced) -> None:
    state.replicas[event.replica_id] = Replica(
        event.replica_id,
        event.offtaker_id,
        event.workload_id,
        event.contract_id,
        event.farm_id,
        event.node_id,
    )
    state.placements[event.contract_id] = Placement(
        event.replica_id,
        dict(event.scores),
        event.total,
        event.price_cu_hour,
        offtaker_id=event.offtaker_id,
        workload_id=event.workload_id,
        farm_id=event.farm_id,
        node_id=event.node_id,
        grid=event.grid,
    )


def replica_migrated(state: MarketState, envelope: Envelope, event: ReplicaMigrated) -> None:
    replica = state.replicas.get(event.replica_id)
    contract = state.contracts.get(event.to_contract_id)
    farm_id = contract.farm_id if contract else (replica.farm_id if replica else "")
    state.replicas[event.replica_id] = Replica(
        event.replica_id,
        event.offtaker_id,
        event.workload_id,
        event.to_contract_id,
        farm_id,
        event.to_node_id,
    )
    state.workload(event.offtaker_id, event.workload_id).migrations.append(
        Migration(
            moved_at=envelope.occurred_at,
            replica_id=event.replica_id,
            from_node_id=event.from_node_id,
            to_node_id=event.to_node_id,
            from_contract_id=event.from_contract_id,
            to_contract_id=event.to_contract_id,
            reason=event.reason,
        )
    )


def sla_outcome(state: MarketState, envelope: Envelope, event: SlaOutcomeRecorded) -> None:
    state.sla_outcomes[event.contract_id] = SlaOutcome(
        event.contract_id,
        event.offtaker_id,
        event.farm_id,
        event.uptime_pct,
        event.hours_down,
        event.met,
        event.penalty,
        promised_pct=event.sla.uptime_pct,
        period_hours=event.period_hours,
        node_id=event.node_id,
        started_at=event.started_at,
        ended_at=event.ended_at,
    )


def usage_recorded(state: MarketState, envelope: Envelope, event: UsageRecorded) -> None:
    usage = state.usage.setdefault(event.contract_id, Usage())
    usage.hours[event.hour] = (event.cu_hours, event.su_hours, event.nu_gb)


def usage_billed(state: MarketState, envelope: Envelope, event: UsageBilled) -> None:
    contract = state.contracts.get(event.contract_id)
    if contract is None:
        return
    contract.billed = event.amount if contract.billed is None else contract.billed + event.amount
    contract.billed_hours += 1


def _account(state: MarketState, account_id: str, currency: str) -> Account:
    account = state.accounts.get(account_id)
    if account is None:
        account = state.accounts[account_id] = Account(account_id, currency)
    return account


def transfer_posted(state: MarketState, envelope: Envelope, event: TransferPosted) -> None:
    # The ledger's one rule (hero.domain.ledger.match_leg): money moves once both legs of a
    # sound pair are recorded, each on its own account's stream.
    step = match_leg(
        state.waiting_legs.pop(event.transfer_id, None),
        Leg(account_of_stream(envelope.stream), event),
    )
    if step.waiting is not None:
        state.waiting_legs[event.transfer_id] = step.waiting
    if step.problem is not None:
        state.unsound_transfers[event.transfer_id] = step.problem.value
    posted = step.posted
    if posted is None:
        return
    currency = posted.amount.currency.value
    debit = _account(state, posted.debit_account, currency)
    credit = _account(state, posted.credit_account, currency)
    debit.balance -= posted.amount.amount
    credit.balance += posted.amount.amount
    debit.transfers += 1
    credit.transfers += 1
