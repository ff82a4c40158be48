"""The ledger on the event store: each account is a stream, each transfer lands on both.

A post is one atomic ``append_many``: both legs of every transfer, plus whatever the caller
records with them (a bill, a conversion). A guarded account that is debited is appended at
the version its balance was read at, so two posts racing for the same funds cannot both pass
the guard; credits and the outside world's accounts skip the check, because adding money
cannot break a guard. The command id makes a repeated post a no-op.

A balance counts a leg only when its pair is recorded on the other account and matches it
(:func:`hero.domain.ledger.match_leg`): a one-sided ``TransferPosted`` -- a raw append from
before those were refused, or a row written into the store by hand -- can never be spent, and
:func:`read_book` reports it, with its transfer id, as unbalanced. The read side is a view
of the market model (:mod:`hero.model`), the one fold of the log: :func:`read_book` folds the
transfer legs into it and answers from its state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from hero.domain.clock import Clock, SystemClock
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountState,
    Ledger,
    Leg,
    LegProblem,
    Transfer,
    account_of_stream,
    account_stream,
    check_transfer,
    evolve_account,
    match_leg,
    orphan_reason,
)
from hero.model import MarketState, apply_all
from hero.store import (
    ANY_VERSION,
    AppendResult,
    ConcurrencyConflict,
    DuplicateEventId,
    EventStore,
    NewEvent,
    PoisonRow,
    RecordedEvent,
    SkipHandler,
    StreamAppend,
    readable_events,
    recorded_after,
    skip_row,
)
from schemas import Envelope, Event, Money, TransferPosted

__all__ = [
    "LedgerReport",
    "LedgerService",
    "PostResult",
    "ledger_report",
    "read_book",
    "read_ledger",
    "transfer_items",
]

_TRANSFERS = frozenset({"TransferPosted"})


@dataclass(frozen=True, slots=True)
class PostResult:
    results: list[AppendResult] = field(default_factory=list)
    duplicate: bool = False


@dataclass
class _Plan:
    """The events of one post, grouped by stream, with the versions the guards were read at."""

    events: dict[str, list[tuple[Event, str | None]]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    guarded: dict[str, AccountState] = field(default_factory=dict)
    """Each guarded account debited, as it stands with every leg of this post (by account)."""

    def add(self, stream: str, event: Event, event_id: str | None = None) -> None:
        self.events.setdefault(stream, []).append((event, event_id))


class LedgerService:
    """Posts transfers through the store; thread-safe, with a cache of account balances."""

    def __init__(
        self,
        store: EventStore,
        clock: Clock | None = None,
        *,
        actor: str = "ledger",
        max_attempts: int = 20,
    ):
        self._store = store
        self._clock = clock or SystemClock()
        self._actor = actor
        self._attempts = max_attempts
        self._accounts: dict[str, tuple[int, AccountState]] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> EventStore:
        return self._store

    def account(self, account: str) -> AccountState:
        return self._load(account)[1]

    def _load(self, account: str) -> tuple[int, AccountState]:
        with self._lock:
            version, state = self._accounts.get(account, (0, AccountState.empty(account)))
        for row in self._store.read_stream(account_stream(account), version + 1):
            event = row.envelope().decode()
            if isinstance(event, TransferPosted) and self._paired(Leg(account, event)):
                state = evolve_account(state, event)
            version = row.version
        with self._lock:
            if self._accounts.get(account, (-1,))[0] < version:
                self._accounts[account] = (version, state)
        return version, state

    def _paired(self, leg: Leg) -> bool:
        """Is the other leg of this transfer recorded on its account, and equal to this one?"""
        if leg.side is None:
            return False
        other = "credit" if leg.side == "debit" else "debit"
        row = self._store.read_event(_leg_id(leg.event.transfer_id, other))
        if row is None:
            return False
        pair = row.envelope().decode()
        if not isinstance(pair, TransferPosted):
            return False
        return match_leg(Leg(account_of_stream(row.stream), pair), leg).posted is not None

    def post(
        self,
        transfers: Sequence[Transfer],
        command_id: str,
        *,
        records: Iterable[tuple[str, Event]] = (),
        actor: str | None = None,
        correlation_id: str | None = None,
    ) -> PostResult:
        """Post ``transfers`` (in order) with ``records`` (stream, event) in one append.

        Raises :class:`Rejected` when a rule refuses (insufficient funds, mismatched
        currency...) and writes nothing; a repeated ``command_id`` is a duplicate.
        """
        extra = list(records)
        first = account_stream(transfers[0].debit_account) if transfers else extra[0][0]
        if self._store.command_result(first, command_id) is not None:
            return PostResult(duplicate=True)
        for _ in range(self._attempts):
            try:
                plan = self._plan(transfers)
            except Rejected as refusal:
                # A transfer posted before is a repeat, whatever the accounts hold now: say so
                # rather than what a second posting would break (e.g. insufficient funds).
                self._refuse_a_repeat(transfers, refusal)
                raise
            for stream, event in extra:
                plan.add(stream, event)
            try:
                results = self._store.append_many(
                    self._appends(plan, command_id, actor or self._actor, correlation_id),
                    command_id,
                )
            except ConcurrencyConflict:
                continue
            except DuplicateEventId:
                ids = ", ".join(t.transfer_id for t in transfers)
                raise Rejected(
                    "duplicate_transfer", f"a transfer id among {ids} was posted before"
                ) from None
            duplicate = any(result.duplicate for result in results)
            if not duplicate:
                self._remember(plan, results)
            return PostResult(results, duplicate)
        raise Rejected("contention", f"accounts kept moving; gave up after {self._attempts} tries")

    def _remember(self, plan: _Plan, results: list[AppendResult]) -> None:
        """Cache the guarded accounts this post debited as it left them: each was appended at
        the version it was read at, so its stream now ends with this post's legs (both legs
        of each, so matched) and nothing else; the next post need not read them back."""
        versions = {result.stream: result.last_version for result in results}
        with self._lock:
            for account, state in plan.guarded.items():
                version = versions[account_stream(account)]
                if self._accounts.get(account, (-1,))[0] < version:
                    self._accounts[account] = (version, state)

    def _refuse_a_repeat(self, transfers: Sequence[Transfer], refusal: Rejected) -> None:
        """Raise ``duplicate_transfer`` in place of ``refusal`` when a transfer was posted."""
        for transfer in transfers:
            if self._store.read_event(_leg_id(transfer.transfer_id, "debit")) is not None:
                raise Rejected(
                    "duplicate_transfer", f"transfer {transfer.transfer_id} was posted before"
                ) from refusal

    def _plan(self, transfers: Sequence[Transfer]) -> _Plan:
        ids = [transfer.transfer_id for transfer in transfers]
        if len(set(ids)) != len(ids):
            raise Rejected("duplicate_transfer", f"a transfer id appears twice in one post: {ids}")
        plan = _Plan()
        running: dict[str, AccountState] = {}
        credited: dict[str, list[TransferPosted]] = {}  # earlier legs of this post, not loaded
        for transfer in transfers:
            debit, credit, event = transfer.debit_account, transfer.credit_account, transfer.event()
            if debit not in running:
                version, state = self._load(debit)
                for earlier in credited.pop(debit, []):
                    state = evolve_account(state, earlier)
                running[debit] = state
                if state.guarded:
                    plan.expected[account_stream(debit)] = version
            check_transfer(transfer, running[debit])
            running[debit] = evolve_account(running[debit], event)
            if credit in running:
                running[credit] = evolve_account(running[credit], event)
            else:
                credited.setdefault(credit, []).append(event)
            # Event ids named after the transfer: the store refuses a transfer id twice, even
            # under another command id.
            plan.add(account_stream(debit), event, _leg_id(transfer.transfer_id, "debit"))
            plan.add(account_stream(credit), event, _leg_id(transfer.transfer_id, "credit"))
        plan.guarded = {
            account: running[account]
            for account in running
            if account_stream(account) in plan.expected
        }
        return plan

    def _appends(
        self, plan: _Plan, command_id: str, actor: str, correlation_id: str | None
    ) -> list[StreamAppend]:
        now = self._clock.now()
        return [
            StreamAppend(
                stream,
                plan.expected.get(stream, ANY_VERSION),
                [
                    _with_id(
                        NewEvent.of(
                            event,
                            actor=actor,
                            occurred_at=now,
                            causation_id=command_id,
                            correlation_id=correlation_id,
                        ),
                        event_id,
                    )
                    for event, event_id in events
                ],
            )
            for stream, events in plan.events.items()
        ]


def _leg_id(transfer_id: str, leg: str) -> str:
    """The event id of one leg; a long transfer id is hashed so the id stays within 200."""
    if len(transfer_id) + len(leg) + 1 > 200:
        transfer_id = "transfer-" + hashlib.sha256(transfer_id.encode()).hexdigest()
    return f"{transfer_id}.{leg}"


def _with_id(event: NewEvent, event_id: str | None) -> NewEvent:
    return event if event_id is None else dataclasses.replace(event, id=event_id)


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """What ``hero accounts list`` and the demo's money check read: the matched transfers'
    balances, and every unsound transfer with its code and its reason."""

    ledger: Ledger
    problems: dict[str, LegProblem]
    """Transfer id -> the code of what is wrong with it (what read models show)."""
    unbalanced: dict[str, str]
    """Transfer id -> why it is not one sound transfer (orphan legs included)."""

    @property
    def balanced(self) -> bool:
        return not self.unbalanced and all(total == 0 for total in self.ledger.totals().values())


def ledger_report(state: MarketState) -> LedgerReport:
    """The ledger as the market model holds it (a view: it folds nothing)."""
    ledger = Ledger(
        accounts={
            account_id: AccountState(
                account_id, Money.of(account.balance, account.currency), account.transfers
            )
            for account_id, account in state.accounts.items()
        },
        applied=set(state.posted_transfers),
    )
    # A leg still waiting is an orphan until a fault (of a later leg) says more.
    problems = dict.fromkeys(state.waiting_legs, LegProblem.ORPHAN_LEG)
    problems.update({tid: LegProblem(code) for tid, code in state.unsound_transfers.items()})
    unbalanced = {tid: orphan_reason(leg) for tid, leg in state.waiting_legs.items()}
    unbalanced.update(state.unsound_reasons)
    return LedgerReport(ledger, dict(sorted(problems.items())), dict(sorted(unbalanced.items())))


def transfer_items(
    store: EventStore, batch: int = 5000, on_skip: SkipHandler | None = None
) -> Iterator[tuple[Envelope, TransferPosted]]:
    """Every recorded transfer leg, in log order, with its envelope; a transfer row that does
    not decode goes to ``on_skip`` (a log line by default)."""
    rows = recorded_after(store, 0, batch)
    for _, envelope, event in readable_events(rows, on_skip or _log_skip, types=_TRANSFERS):
        if isinstance(event, TransferPosted):
            yield envelope, event


def read_book(
    store: EventStore, batch: int = 5000, on_skip: SkipHandler | None = None
) -> LedgerReport:
    """Every leg in the store matched into transfers by the market model: balances, and the
    unsound transfers. A transfer row that does not decode goes to ``on_skip``."""
    return ledger_report(apply_all(transfer_items(store, batch, on_skip)))


def read_ledger(store: EventStore, batch: int = 5000, on_skip: SkipHandler | None = None) -> Ledger:
    """Every account folded from the store's matched transfers (each counted once)."""
    return read_book(store, batch, on_skip).ledger


def _log_skip(row: RecordedEvent, error: PoisonRow) -> None:
    skip_row(None, "ledger", row, error)
