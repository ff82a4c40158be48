"""Ledger throughput: transfers posted through LedgerService against raw appends, same run.

    ./run bench-ledger [--stacks embedded,production] [--transfers 20000] [--accounts 1000]
                       [--synchronous full|normal] [--quick]

On each stack's store (embedded: SQLite in a temporary directory; production: PostgreSQL, an
embedded server started here and stopped by pid, a fresh database per store), pre-funds
``--accounts`` offtaker accounts from the world, then posts ``--transfers`` transfers
(offtaker -> farmer, each its own post and command id) through LedgerService and times them:
each post reads the command's record and the payer's stream, checks the balance and appends
both legs with the payer's version. Then the very same two legs per transfer (built before
the clock starts) go straight to a fresh store of the same kind with ``append_many`` at
ANY_VERSION, no checks: the raw rate (the two take turns, ``--rounds`` slices each, so that
a disk busy elsewhere slows both alike). Prints transfers/s for both, the ratio ledger/raw
and whether the books still sum to zero per currency (folded from the store with
``read_ledger``), one column per stack. The same two runs on the in-memory store follow, as
a line of their own. ``--quick``: 2,000 transfers over 200 accounts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from _stacks import STORE_LABELS, add_stacks_argument, postgres, table

from hero.domain.clock import SystemClock
from hero.domain.ledger import AccountKind, Transfer, account_id, account_stream
from hero.payments.ledger import LedgerService, read_ledger
from hero.store import (
    ANY_VERSION,
    EventStore,
    MemoryEventStore,
    NewEvent,
    PostgresEventStore,
    SqliteEventStore,
    StreamAppend,
)
from schemas import Money, TransferKind

AMOUNT = Money.of("1.2345678", "TFT")
WORLD = account_id(AccountKind.WORLD, "chain", "TFT")
FUND_BATCH = 100

Figures = tuple[float, float, str]  # ledger seconds, raw seconds, the zero-sum verdict


def offtakers(count: int) -> list[str]:
    return [account_id(AccountKind.OFFTAKER, f"acme-{i:05d}", "TFT") for i in range(count)]


def farmers(count: int) -> list[str]:
    return [account_id(AccountKind.FARMER, f"farm-{i:05d}", "TFT") for i in range(count)]


def bills(transfers: int, accounts: int) -> list[Transfer]:
    """Transfer ``i``: offtaker ``i % accounts`` pays a farmer (one farmer per ten offtakers)."""
    payers, payees = offtakers(accounts), farmers(max(1, accounts // 10))
    return [
        Transfer(
            f"bill-{i}:t",
            payers[i % accounts],
            payees[i % len(payees)],
            AMOUNT,
            TransferKind.BILL,
            f"bill-{i}",
        )
        for i in range(transfers)
    ]


def fund(ledger: LedgerService, transfers: int, accounts: int) -> None:
    """Enough for every offtaker's share of the transfers, paid in from the world."""
    each = Money.of(AMOUNT.amount * -(-transfers // accounts), "TFT")
    payments = [
        Transfer(f"fund-{i}:t", WORLD, payer, each, TransferKind.PAYMENT, f"fund-{i}")
        for i, payer in enumerate(offtakers(accounts))
    ]
    for start in range(0, len(payments), FUND_BATCH):
        ledger.post(payments[start : start + FUND_BATCH], f"fund-{start}")


def post_all(ledger: LedgerService, plan: list[Transfer]) -> float:
    started = time.perf_counter()
    for transfer in plan:
        ledger.post([transfer], f"cmd-{transfer.reference}")
    return time.perf_counter() - started


def raw_appends(plan: list[Transfer]) -> list[tuple[list[StreamAppend], str]]:
    """The same legs as the ledger writes, one event per account stream, built up front."""
    now = datetime.now(UTC)

    def leg(transfer: Transfer, account: str) -> StreamAppend:
        event = NewEvent.of(
            transfer.event(), actor="bench", occurred_at=now, causation_id=transfer.reference
        )
        return StreamAppend(account_stream(account), ANY_VERSION, [event])

    return [
        ([leg(t, t.debit_account), leg(t, t.credit_account)], f"cmd-{t.reference}") for t in plan
    ]


def append_all(store: EventStore, appends: list[tuple[list[StreamAppend], str]]) -> float:
    started = time.perf_counter()
    for many, command_id in appends:
        store.append_many(many, command_id)
    return time.perf_counter() - started


def zero_sum(store: EventStore, plan: list[Transfer]) -> str:
    books = read_ledger(store)
    totals = {str(currency): total for currency, total in books.totals().items()}
    negative = [s.account for s in books.accounts.values() if s.guarded and s.balance.is_negative]
    paid = sum(
        (s.balance.amount for s in books.accounts.values() if s.account.startswith("farmer.")),
        Decimal(0),
    )
    ok = (
        all(total == 0 for total in totals.values())
        and not negative
        and paid == AMOUNT.amount * len(plan)
    )
    shown = ", ".join(f"{currency} {total:f}" for currency, total in totals.items())
    return (
        f"{'ok' if ok else 'FAILED'} (totals: {shown}; guarded accounts below zero: "
        f"{len(negative)}, farmers received {paid} TFT of {AMOUNT.amount * len(plan)})"
    )


def measure(
    make: Callable[[str], EventStore], plan: list[Transfer], accounts: int, rounds: int
) -> Figures:
    """Ledger and raw take turns, a slice of the plan each, so that a disk busy with someone
    else's work for a while slows both alike; the times are summed over the slices."""
    ledger_store, raw_store = make("ledger"), make("raw")
    try:
        ledger = LedgerService(ledger_store, SystemClock(), actor="bench")
        fund(ledger, len(plan), accounts)
        appends = raw_appends(plan)
        size = max(1, -(-len(plan) // rounds))
        ledger_s = raw_s = 0.0
        for start in range(0, len(plan), size):
            ledger_s += post_all(ledger, plan[start : start + size])
            raw_s += append_all(raw_store, appends[start : start + size])
        assert raw_store.current_position() == 2 * len(plan)
        return ledger_s, raw_s, zero_sum(ledger_store, plan)
    finally:
        ledger_store.close()
        raw_store.close()


def on_stack(stack: str, args: argparse.Namespace, plan: list[Transfer]) -> Figures:
    clock = SystemClock()
    if stack == "embedded":
        with tempfile.TemporaryDirectory(prefix="hero-ledger-") as name:
            tmp = Path(name)
            return measure(
                lambda kind: SqliteEventStore(tmp / f"{kind}.db", clock, args.synchronous.upper()),
                plan,
                args.accounts,
                args.rounds,
            )
    with postgres() as server:
        return measure(
            lambda kind: PostgresEventStore(server.database(kind), clock),
            plan,
            args.accounts,
            args.rounds,
        )


def report(results: dict[str, Figures], count: int) -> str:
    def cells(pick: Callable[[Figures], str]) -> list[str]:
        return [pick(f) for f in results.values()]

    rows = [
        (
            "ledger, transfers/s",
            cells(lambda f: f"{count / f[0]:,.0f} ({f[0]:.2f} s)"),
        ),
        (
            "raw append_many, transfers/s",
            cells(lambda f: f"{count / f[1]:,.0f} ({f[1]:.2f} s)"),
        ),
        ("raw append_many, events/s", cells(lambda f: f"{2 * count / f[1]:,.0f}")),
        ("ratio ledger/raw", cells(lambda f: f"{f[1] / f[0]:.2f}")),
        ("zero-sum", cells(lambda f: f[2].split(" ")[0])),
    ]
    return table(rows, list(results), STORE_LABELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument(
        "--synchronous",
        choices=["full", "normal"],
        default="full",
        help="the SQLite store's commit durability (see README)",
    )
    parser.add_argument(
        "--rounds", type=int, default=10, help="slices in which ledger and raw take turns"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory store")
    parser.add_argument("--quick", action="store_true", help="2,000 transfers: a smoke run")
    add_stacks_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.transfers, args.accounts = 2000, 200
    for option in ("transfers", "accounts", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    plan = bills(args.transfers, args.accounts)
    results = {stack: on_stack(stack, args, plan) for stack in args.stacks}
    payees = max(1, args.accounts // 10)
    print(
        f"ledger: {args.transfers} transfers, {args.accounts} offtakers -> {payees} farmers, "
        f"one post per transfer; SQLite synchronous={args.synchronous.upper()}, PostgreSQL "
        "synchronous_commit=on"
    )
    print(report(results, len(plan)))
    for stack, (_, _, books) in results.items():
        print(f"zero-sum on {STORE_LABELS[stack]}: {books}")
    if not args.no_memory:
        clock = SystemClock()
        ledger_s, raw_s, books = measure(
            lambda _: MemoryEventStore(clock), plan, args.accounts, args.rounds
        )
        count = len(plan)
        print(
            f"in-memory store (baseline): ledger {count / ledger_s:,.0f} transfers/s, raw "
            f"append_many {count / raw_s:,.0f} transfers/s, ratio {raw_s / ledger_s:.2f}; "
            f"zero-sum: {books.split(' ')[0]}"
        )


if __name__ == "__main__":
    main()
