"""How the money, usage, scaling and policy events change the model."""

from __future__ import annotations

from functools import lru_cache

from hero.domain.errors import Rejected
from hero.domain.ledger import (
    Leg,
    Matched,
    account_kind,
    account_of_stream,
    match_leg,
    third_leg,
)
from hero.model.state import (
    Account,
    AccountBook,
    HourUsage,
    MarketState,
    Migration,
    Placement,
    Replica,
    SlaOutcome,
    TransferLine,
    Usage,
)
from schemas import (
    BalanceLow,
    Envelope,
    OfftakerMandateSet,
    ReplicaMigrated,
    ReplicaPlaced,
    ScaleDecided,
    SlaOutcomeRecorded,
    TransferKind,
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
    if event.hour not in usage.hours:  # the first fact of an hour stands
        figures = (event.cu_hours, event.su_hours, event.nu_gb, event.seconds)
        usage.hours[event.hour] = HourUsage(*figures)


def balance_low(state: MarketState, envelope: Envelope, event: BalanceLow) -> None:
    state.low_balance.add(event.account_id)


def usage_billed(state: MarketState, envelope: Envelope, event: UsageBilled) -> None:
    if (billed := state.billing.get(event.contract_id)) is not None:
        billed.mark_billed(event.hour)
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
    state.low_balance.discard(event.credit_account)  # any credit leg ends the warning
    if event.kind == TransferKind.SLA_PENALTY:
        state.sla_paid.add(event.reference)
    transfer_id = event.transfer_id
    leg = Leg(account_of_stream(envelope.stream), event)
    if transfer_id in state.posted_transfers:
        before, step = None, third_leg(leg)  # a pair was matched: nothing more moves
    else:
        before = state.waiting_legs.pop(transfer_id, None)
        step = match_leg(before, leg)
    _file_leg(state, event, before, step)
    if step.waiting is not None:
        state.waiting_legs[transfer_id] = step.waiting
    if step.problem is not None and step.fault is not None:
        state.unsound_transfers[transfer_id] = step.problem.value
        state.unsound_reasons[transfer_id] = step.fault
    posted = step.posted
    if posted is not None:
        _post(state, posted, envelope)


def _post(state: MarketState, posted: TransferPosted, envelope: Envelope) -> None:
    """A matched pair moves the money and shows a line in each named account's book."""
    state.posted_transfers.add(posted.transfer_id)
    amount = posted.amount
    value = amount.amount
    debit = _account(state, posted.debit_account, amount.currency.value)
    credit = _account(state, posted.credit_account, amount.currency.value)
    debit.balance -= value
    credit.balance += value
    debit.transfers += 1
    credit.transfers += 1
    books = state.books  # every named account has its book: _file_leg opened it
    for account_id in _named(posted):
        books[account_id].lines.appendleft(_line(posted, account_id, envelope))


def _named(event: TransferPosted) -> tuple[str, ...]:
    """The well-formed accounts a leg names: only they are shown it (never a third tenant,
    whatever stream the leg lies on)."""
    return _named_pair(event.debit_account, event.credit_account)


@lru_cache(maxsize=1 << 16)  # asked two or three times per leg, of the same few pairs
def _named_pair(debit: str, credit: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in (debit, credit) if _is_account(a)))


@lru_cache(maxsize=1 << 16)  # a replay asks about the same few accounts for every transfer
def _is_account(account_id: str) -> bool:
    try:
        account_kind(account_id)
    except Rejected:
        return False
    return True


def _file_leg(state: MarketState, event: TransferPosted, before: Leg | None, step: Matched) -> None:
    """Each named account's book follows the match: a leg waits on, or a problem is filed
    with, the accounts its legs name."""
    named = _named(event)
    books = state.books
    for account_id in named:
        if account_id not in books:
            books[account_id] = AccountBook()
    transfer_id = event.transfer_id
    if before is not None:
        for account_id in _named(before.event):
            state.book(account_id).waiting.pop(transfer_id, None)
    if step.waiting is not None:
        for account_id in _named(step.waiting.event):
            state.book(account_id).waiting[transfer_id] = step.waiting
    if step.problem is not None:
        # A mismatch ends the waiting leg too: its accounts learn why (an invalid leg leaves
        # the waiting one waiting).
        also = _named(before.event) if before is not None and step.waiting is None else ()
        for account_id in dict.fromkeys(named + also):
            state.book(account_id).faults[transfer_id] = step.problem.value


def _line(event: TransferPosted, account_id: str, envelope: Envelope) -> TransferLine:
    credit = event.credit_account == account_id
    return TransferLine(
        transfer_id=event.transfer_id,
        kind=event.kind,
        credit=credit,
        amount=event.amount.amount,
        counterparty=event.debit_account if credit else event.credit_account,
        reference=event.reference,
        at=envelope.occurred_at,
        position=envelope.position,
    )
