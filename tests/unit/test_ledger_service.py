"""LedgerService on the event store: one contract, run against the memory and SQLite adapters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal

import pytest

from hero.domain.clock import ManualClock
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    Ledger,
    RevenueSplit,
    Transfer,
    account_id,
    account_stream,
    split_revenue,
)
from hero.payments.ledger import LedgerService, read_ledger
from hero.store import (
    AppendResult,
    EventStore,
    MemoryEventStore,
    RecordedEvent,
    SqliteEventStore,
    StoreError,
    StreamAppend,
)
from schemas import Currency, FiatConverted, Money, TransferKind, TransferPosted
from tests.unit.store_contract import CLOCK_START, THREAD_TIMEOUT_S, run_threads

WORLD_USD = account_id(AccountKind.WORLD, "stripe", "USD")
FX_USD = account_id(AccountKind.WORLD, "fx", "USD")
FX_TFT = account_id(AccountKind.WORLD, "fx", "TFT")
CHAIN = account_id(AccountKind.WORLD, "chain", "TFT")
TREASURY = account_id(AccountKind.TREASURY, "cooperative", "USD")
ACME = account_id(AccountKind.OFFTAKER, "acme", "TFT")
FARMER = account_id(AccountKind.FARMER, "farm-1", "TFT")
POOL = account_id(AccountKind.POOL, "pool-1", "TFT")
THREEFOLD = account_id(AccountKind.THREEFOLD, "threefold", "TFT")

GUARDED_KINDS = [kind for kind in AccountKind if kind.guarded]


def tft(amount: str | int) -> Money:
    return Money.of(amount, "TFT")


def usd(amount: str | int) -> Money:
    return Money.of(amount, "USD")


def transfer(
    transfer_id: str,
    debit: str,
    credit: str,
    amount: Money,
    kind: TransferKind = TransferKind.BILL,
) -> Transfer:
    return Transfer(transfer_id, debit, credit, amount, kind, reference=f"ref-{transfer_id}")


def fund(ledger: LedgerService, account: str, amount: Money, command_id: str) -> None:
    world = CHAIN if amount.currency is Currency.TFT else WORLD_USD
    posted = ledger.post(
        [transfer(f"{command_id}:t", world, account, amount, TransferKind.PAYMENT)], command_id
    )
    assert not posted.duplicate


def legs(store: EventStore, account: str) -> list[TransferPosted]:
    events = [row.envelope().decode() for row in store.read_stream(account_stream(account))]
    assert all(isinstance(event, TransferPosted) for event in events)
    return events  # type: ignore[return-value]


def converted(payment: str) -> FiatConverted:
    return FiatConverted(
        payment_id=payment,
        quote_id=f"q-{payment}",
        offtaker_id="acme",
        fiat=usd("10"),
        tft=tft("400"),
    )


class Interloper(EventStore):
    """Delegates to ``inner``; runs ``before`` once, just before the first append_many.

    That is a second writer landing between the ledger's read of a balance and its append.
    """

    def __init__(self, inner: EventStore, before: Callable[[], None]):
        self.inner, self._before = inner, before
        self.calls = 0

    def append_many(self, appends: Sequence[StreamAppend], command_id: str) -> list[AppendResult]:
        self.calls += 1
        if self.calls == 1:
            self._before()
        return self.inner.append_many(appends, command_id)

    def append(self, stream, expected_version, events, command_id):  # type: ignore[no-untyped-def]
        return self.inner.append(stream, expected_version, events, command_id)

    def command_result(self, stream: str, command_id: str) -> AppendResult | None:
        return self.inner.command_result(stream, command_id)

    def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return self.inner.read_stream(stream, from_version)

    def read_all(self, from_position: int = 1, limit: int = 1000) -> list[RecordedEvent]:
        return self.inner.read_all(from_position, limit)

    def stream_version(self, stream: str) -> int:
        return self.inner.stream_version(stream)

    def current_position(self) -> int:
        return self.inner.current_position()


class LedgerServiceContract:
    """What LedgerService promises on any EventStore adapter."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(CLOCK_START)

    @pytest.fixture
    def store(self, clock: ManualClock) -> EventStore:
        raise NotImplementedError("a contract subclass provides the store under test")

    @pytest.fixture
    def second_store(self, clock: ManualClock, store: EventStore) -> EventStore:
        """The same events seen through another store object (another process, for SQLite)."""
        raise NotImplementedError

    @pytest.fixture
    def ledger(self, store: EventStore, clock: ManualClock) -> LedgerService:
        return LedgerService(store, clock)

    # --- one post: both legs, with its records, atomically ----------------------------------

    def test_a_post_lands_both_legs_on_both_streams_with_its_records(self, ledger, store):
        fund(ledger, ACME, tft("100"), "fund-acme")
        before = store.current_position()
        bill = transfer("bill-1:farmer", ACME, FARMER, tft("60"))
        posted = ledger.post([bill], "cmd-bill-1", records=[("conversion-p1", converted("p1"))])

        assert posted.duplicate is False
        assert {r.stream for r in posted.results} == {
            account_stream(ACME),
            account_stream(FARMER),
            "conversion-p1",
        }
        assert legs(store, ACME)[-1] == bill.event()
        assert legs(store, FARMER) == [bill.event()]
        assert store.read_stream("conversion-p1")[0].envelope().decode() == converted("p1")
        # one append: three consecutive positions, every event caused by the command
        new = store.read_all(before + 1)
        assert [row.position for row in new] == [before + 1, before + 2, before + 3]
        assert {row.envelope().causation_id for row in new} == {"cmd-bill-1"}
        assert ledger.account(ACME).balance == tft("40")
        assert ledger.account(FARMER).balance == tft("60")
        assert ledger.account(FARMER).transfers == 1

    def test_a_post_that_cannot_be_appended_writes_none_of_it(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        before = store.current_position()
        with pytest.raises(StoreError, match="stream"):
            ledger.post(
                [transfer("bill-1", ACME, FARMER, tft("5"))],
                "cmd-bill-1",
                records=[("not a stream id!", converted("p1"))],
            )
        assert store.current_position() == before
        assert legs(store, FARMER) == []
        assert ledger.account(ACME).balance == tft("10")

    def test_a_balance_that_moves_before_the_append_is_read_again(self, store, clock):
        """A second writer spends acme between the guard's read and the append: the post
        conflicts, writes nothing, re-reads and is refused on the fresh balance."""
        setup = LedgerService(store, clock)
        fund(setup, ACME, tft("10"), "fund-acme")

        def spend_first() -> None:
            LedgerService(store, clock).post([transfer("other", ACME, POOL, tft("7"))], "cmd-other")

        racing = Interloper(store, spend_first)
        ledger = LedgerService(racing, clock)
        assert ledger.account(ACME).balance == tft("10")  # the read the guard will use
        with pytest.raises(Rejected) as refused:
            ledger.post([transfer("mine", ACME, FARMER, tft("5"))], "cmd-mine")
        assert refused.value.reason == "insufficient_funds"
        assert racing.calls == 1  # the second try was refused before appending
        assert [leg.transfer_id for leg in legs(store, ACME)] == ["fund-acme:t", "other"]
        assert legs(store, FARMER) == []
        assert ledger.account(ACME).balance == tft("3")

    def test_a_credit_racing_in_does_not_stop_a_post(self, store, clock):
        setup = LedgerService(store, clock)
        fund(setup, ACME, tft("10"), "fund-acme")
        racing = Interloper(store, lambda: fund(setup, ACME, tft("1"), "top-up"))
        ledger = LedgerService(racing, clock)
        ledger.account(ACME)
        ledger.post([transfer("mine", ACME, FARMER, tft("5"))], "cmd-mine")
        assert racing.calls == 2  # a conflict on acme's stream, then a retry that passed
        assert [leg.transfer_id for leg in legs(store, ACME)] == ["fund-acme:t", "top-up:t", "mine"]
        assert ledger.account(ACME).balance == tft("6")
        assert [leg.transfer_id for leg in legs(store, FARMER)] == ["mine"]

    # --- idempotency ----------------------------------------------------------------------------

    def test_a_repeated_command_is_a_duplicate_and_writes_nothing(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        first = ledger.post([transfer("bill-1", ACME, FARMER, tft("4"))], "cmd-bill-1")
        assert first.duplicate is False
        ledger.post([transfer("bill-2", ACME, POOL, tft("6"))], "cmd-bill-2")  # acme spent down
        assert ledger.account(ACME).balance == tft("0")
        position = store.current_position()

        again = ledger.post([transfer("bill-1", ACME, FARMER, tft("4"))], "cmd-bill-1")
        assert again.duplicate is True
        # the command id is what counts, whatever the repeat carries
        other = ledger.post([transfer("bill-9", ACME, THREEFOLD, tft("1"))], "cmd-bill-1")
        assert other.duplicate is True
        assert store.current_position() == position
        assert ledger.account(ACME).balance == tft("0")
        assert ledger.account(FARMER).balance == tft("4")
        assert ledger.account(THREEFOLD).balance == tft("0")

    def test_a_repeat_through_another_service_is_a_duplicate_too(
        self, ledger, store, second_store, clock
    ):
        fund(ledger, ACME, tft("10"), "fund-acme")
        ledger.post([transfer("bill-1", ACME, FARMER, tft("4"))], "cmd-bill-1")
        position = store.current_position()
        other = LedgerService(second_store, clock)
        again = other.post([transfer("bill-1", ACME, FARMER, tft("4"))], "cmd-bill-1")
        assert again.duplicate is True
        assert store.current_position() == position
        assert other.account(FARMER).balance == tft("4")

    # --- guards -----------------------------------------------------------------------------------

    def test_insufficient_funds_writes_nothing(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        position = store.current_position()
        with pytest.raises(Rejected) as refused:
            ledger.post(
                [transfer("bill-1", ACME, FARMER, tft("10.0000001"))],
                "cmd-bill-1",
                records=[("conversion-p1", converted("p1"))],
            )
        assert refused.value.reason == "insufficient_funds"
        assert store.current_position() == position
        assert store.read_stream("conversion-p1") == []
        assert store.command_result(account_stream(ACME), "cmd-bill-1") is None
        # refused, not recorded: the same command id goes through once the funds are there
        fund(ledger, ACME, tft("0.0000001"), "top-up")
        assert not ledger.post(
            [transfer("bill-1", ACME, FARMER, tft("10.0000001"))], "cmd-bill-1"
        ).duplicate
        assert ledger.account(ACME).balance == tft("0")

    @pytest.mark.parametrize(
        ("bad", "reason"),
        [
            (transfer("t", ACME, FARMER, usd("1")), "currency_mismatch"),
            (transfer("t", ACME, ACME, tft("1")), "same_account"),
            (transfer("t", ACME, FARMER, tft("0")), "amount_not_positive"),
            (transfer("t", "bogus.x.TFT", FARMER, tft("1")), "unknown_account"),
            (transfer("t", ACME, "offtaker.x.GBP", tft("1")), "unknown_account"),
            (transfer("t", ACME, "bogus.x.TFT", tft("1")), "unknown_account"),
        ],
    )
    def test_every_refusal_writes_nothing(self, ledger, store, bad, reason):
        fund(ledger, ACME, tft("10"), "fund-acme")
        position = store.current_position()
        with pytest.raises(Rejected) as refused:
            ledger.post([transfer("ok", ACME, POOL, tft("1")), bad], "cmd-bad")
        assert refused.value.reason == reason
        assert store.current_position() == position
        assert ledger.account(POOL).balance == tft("0")

    def test_a_credit_then_a_debit_of_one_account_in_one_post(self, ledger, store):
        assert ledger.account(ACME).balance == tft("0")
        ledger.post(
            [
                transfer("pay", CHAIN, ACME, tft("5"), TransferKind.PAYMENT),
                transfer("bill", ACME, FARMER, tft("5")),
            ],
            "cmd-pay-and-bill",
        )
        assert ledger.account(ACME).balance == tft("0")
        assert ledger.account(FARMER).balance == tft("5")
        assert [leg.transfer_id for leg in legs(store, ACME)] == ["pay", "bill"]

    def test_the_balances_a_post_leaves_are_what_the_store_says(self, ledger, store, clock):
        """The service keeps the debited accounts as its post left them (not read back): they
        agree with a fresh service's reading of the store, through more posts and an outside
        credit landing in between."""
        fund(ledger, ACME, tft("100"), "fund-1")
        for n in range(3):
            ledger.post(
                [
                    transfer(f"bill-{n}", ACME, FARMER, tft("7")),
                    transfer(f"pool-{n}", ACME, POOL, tft("2")),
                    transfer(f"back-{n}", FARMER, ACME, tft("1")),
                ],
                f"cmd-bill-{n}",
            )
            fund(LedgerService(store, clock), ACME, tft("1"), f"outside-{n}")
            fresh = LedgerService(store, clock)
            for account in (ACME, FARMER, POOL):
                assert ledger.account(account) == fresh.account(account)
        assert ledger.account(ACME).balance == tft("79")  # 100 - 3 x (7 + 2) + 3 x 1 back + 3 x 1
        with pytest.raises(Rejected, match="insufficient"):
            ledger.post([transfer("too-much", ACME, FARMER, tft("80"))], "cmd-too-much")

    def test_a_debit_before_its_credit_in_one_post_is_refused(self, ledger, store):
        with pytest.raises(Rejected, match="insufficient_funds"):
            ledger.post(
                [
                    transfer("bill", ACME, FARMER, tft("5")),
                    transfer("pay", CHAIN, ACME, tft("5"), TransferKind.PAYMENT),
                ],
                "cmd-bill-then-pay",
            )
        assert store.current_position() == 0

    def test_two_debits_that_together_exceed_the_balance_are_refused_entirely(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        position = store.current_position()
        with pytest.raises(Rejected, match="insufficient_funds"):
            ledger.post(
                [
                    transfer("a", ACME, FARMER, tft("6")),
                    transfer("b", ACME, POOL, tft("4.0000001")),
                ],
                "cmd-two",
            )
        assert store.current_position() == position
        assert ledger.account(ACME).balance == tft("10")
        # exactly the balance, spent in three legs with a credit in between, is allowed
        ledger.post(
            [
                transfer("a", ACME, FARMER, tft("6")),
                transfer("refund", FARMER, ACME, tft("1"), TransferKind.REFUND),
                transfer("b", ACME, POOL, tft("5")),
            ],
            "cmd-three",
        )
        assert ledger.account(ACME).balance == tft("0")
        assert ledger.account(FARMER).balance == tft("5")
        assert ledger.account(POOL).balance == tft("5")

    def test_world_accounts_go_negative(self, ledger):
        ledger.post([transfer("in", WORLD_USD, TREASURY, usd("250"), TransferKind.PAYMENT)], "p1")
        assert ledger.account(WORLD_USD).balance == usd("-250")
        assert ledger.account(TREASURY).balance == usd("250")
        with pytest.raises(Rejected, match="insufficient_funds"):
            ledger.post([transfer("out", TREASURY, FX_USD, usd("250.0000001"))], "c1")
        assert ledger.account(TREASURY).balance == usd("250")

    @pytest.mark.parametrize("kind", GUARDED_KINDS)
    def test_no_guarded_account_goes_negative(self, ledger, store, kind):
        account = account_id(kind, "someone", "TFT")
        fund(ledger, account, tft("1"), "fund")
        with pytest.raises(Rejected, match="insufficient_funds"):
            ledger.post([transfer("t", account, CHAIN, tft("1.0000001"))], "cmd-t")
        assert ledger.account(account).balance == tft("1")
        assert store.current_position() == 2

    # --- concurrency ------------------------------------------------------------------------------

    def test_racing_spenders_never_overdraw(self, ledger, store, second_store, clock):
        """20 threads, half on each of two services (two processes, for SQLite), each spend
        0.7 TFT of acme's 10: exactly 14 are posted, 6 refused, the sum stays zero."""
        fund(ledger, ACME, tft("10"), "fund-acme")
        services = [ledger, LedgerService(second_store, clock)]
        threads = 20
        barrier = threading.Barrier(threads)
        lock = threading.Lock()
        posted: list[int] = []
        refused: list[str] = []

        def spender(index: int) -> None:
            service = services[index % 2]
            farmer = account_id(AccountKind.FARMER, f"farm-{index}", "TFT")
            spend = transfer(f"spend-{index}", ACME, farmer, tft("0.7"))
            service.account(ACME)  # read the balance before the race starts
            barrier.wait(THREAD_TIMEOUT_S)
            try:
                service.post([spend], f"cmd-spend-{index}")
            except Rejected as error:
                with lock:
                    refused.append(error.reason)
            else:
                with lock:
                    posted.append(index)

        run_threads(threads, spender)
        assert len(posted) == 14
        assert refused == ["insufficient_funds"] * 6
        final = read_ledger(second_store)
        assert final.balance(ACME) == tft("0.2")
        farmers = [account_id(AccountKind.FARMER, f"farm-{i}", "TFT") for i in range(threads)]
        spent = sum((final.balance(f).amount for f in farmers), Decimal(0))
        assert spent == Decimal("9.8")
        assert sorted(i for i in range(threads) if final.balance(farmers[i]).amount) == sorted(
            posted
        )
        assert final.totals() == {Currency.TFT: Decimal(0)}
        for service in services:
            assert service.account(ACME).balance == tft("0.2")
            assert service.account(ACME).transfers == 15

    # --- the read side ----------------------------------------------------------------------------

    def test_read_ledger_equals_the_reference_ledger(self, ledger, store):
        split = RevenueSplit()
        posts: list[tuple[str, list[Transfer]]] = [
            ("pay-1", [transfer("pay-1", WORLD_USD, TREASURY, usd("100"), TransferKind.PAYMENT)]),
            (
                "conv-1",
                [
                    transfer("conv-1:usd", TREASURY, FX_USD, usd("100"), TransferKind.CONVERSION),
                    transfer("conv-1:tft", FX_TFT, ACME, tft("4000"), TransferKind.CONVERSION),
                ],
            ),
        ]
        for n, amount in enumerate(["1.0000003", "0.0000009", "250", "0.0000001"]):
            shares = split_revenue(tft(amount), split)
            accounts = (FARMER, POOL, THREEFOLD)
            posts.append(
                (
                    f"bill-{n}",
                    [
                        transfer(f"bill-{n}:{i}", ACME, account, share)
                        for i, (account, share) in enumerate(zip(accounts, shares, strict=True))
                        if share.amount > 0
                    ],
                )
            )
        posts += [
            ("payout-1", [transfer("payout-1", FARMER, CHAIN, tft("100"), TransferKind.PAYOUT)]),
            ("refund-1", [transfer("refund-1", ACME, CHAIN, tft("7.5"), TransferKind.REFUND)]),
        ]
        reference = Ledger()
        for command_id, transfers in posts:
            ledger.post(transfers, command_id)
            for item in transfers:
                assert reference.post(item)
        ledger.post(posts[2][1], posts[2][0])  # a repeat changes neither

        folded = read_ledger(store, batch=3)  # small batches: the paging is exercised too
        assert folded.accounts == reference.accounts
        assert folded.applied == reference.applied
        assert folded.totals() == {Currency.TFT: Decimal(0), Currency.USD: Decimal(0)}
        for account, state in reference.accounts.items():
            assert ledger.account(account) == state
        # billed 251.0000013: pool and ThreeFold 50.2000001 each, the farmer the rest less 100
        assert reference.balance(THREEFOLD) == tft("50.2000001")
        assert reference.balance(POOL) == tft("50.2000001")
        assert reference.balance(FARMER) == tft("50.6000011")

    # --- transfer ids ---------------------------------------------------------------------------

    def test_a_transfer_id_reused_under_another_command_is_refused(
        self, ledger, store, second_store, clock
    ):
        fund(ledger, ACME, tft("10"), "fund-acme")
        ledger.post([transfer("bill-1", ACME, FARMER, tft("4"))], "cmd-a")
        position = store.current_position()
        for service in (ledger, LedgerService(second_store, clock)):
            with pytest.raises(Rejected) as refused:
                service.post([transfer("bill-1", ACME, POOL, tft("1"))], "cmd-b")
            assert refused.value.reason == "duplicate_transfer"
        assert store.current_position() == position
        folded = read_ledger(store)
        for account in (ACME, FARMER, POOL):
            assert ledger.account(account) == folded.state(account)
        assert folded.balance(ACME) == tft("6")
        # the refused command id was not recorded: with a fresh transfer id it goes through
        ledger.post([transfer("bill-2", ACME, POOL, tft("1"))], "cmd-b")
        assert ledger.account(POOL).balance == tft("1")

    def test_a_transfer_id_reused_when_funds_no_longer_cover_it_is_a_duplicate(self, ledger, store):
        # found by test_ledger_property: the rules' insufficient_funds answered before the
        # store could say the transfer id was posted before
        fund(ledger, ACME, tft("10"), "fund-acme")
        ledger.post([transfer("bill-1", ACME, FARMER, tft("8"))], "cmd-a")
        position = store.current_position()
        with pytest.raises(Rejected) as refused:
            ledger.post([transfer("bill-1", ACME, FARMER, tft("8"))], "cmd-again")
        assert refused.value.reason == "duplicate_transfer"
        assert store.current_position() == position
        with pytest.raises(Rejected) as short:  # a new transfer id: the funds are the answer
            ledger.post([transfer("bill-2", ACME, FARMER, tft("8"))], "cmd-new")
        assert short.value.reason == "insufficient_funds"

    def test_one_transfer_id_twice_in_a_post_writes_nothing(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        position = store.current_position()
        twice = [transfer("x", ACME, FARMER, tft("1")), transfer("x", ACME, POOL, tft("1"))]
        with pytest.raises((Rejected, StoreError)):
            ledger.post(twice, "cmd-twice")
        assert store.current_position() == position
        assert ledger.account(ACME).balance == tft("10")

    def test_one_transfer_id_twice_in_a_post_is_rejected(self, ledger):
        fund(ledger, ACME, tft("10"), "fund-acme")
        twice = [transfer("x", ACME, FARMER, tft("1")), transfer("x", ACME, POOL, tft("1"))]
        with pytest.raises(Rejected, match="duplicate_transfer"):
            ledger.post(twice, "cmd-twice")

    def test_a_200_character_transfer_id_is_posted_or_rejected(self, ledger, store):
        fund(ledger, ACME, tft("10"), "fund-acme")
        position = store.current_position()
        long = Transfer("t" * 200, ACME, FARMER, tft("1"), TransferKind.BILL, "bill-long")
        try:
            ledger.post([long], "cmd-long")
        except Rejected:
            assert store.current_position() == position
        else:
            assert read_ledger(store).balance(FARMER) == ledger.account(FARMER).balance == tft("1")


class TestLedgerOnMemoryStore(LedgerServiceContract):
    @pytest.fixture
    def store(self, clock: ManualClock) -> EventStore:
        return MemoryEventStore(clock)

    @pytest.fixture
    def second_store(self, clock: ManualClock, store: EventStore) -> EventStore:
        return store


class TestLedgerOnSqliteStore(LedgerServiceContract):
    @pytest.fixture
    def store(self, clock: ManualClock, tmp_path) -> Iterator[EventStore]:
        store = SqliteEventStore(tmp_path / "events.db", clock)
        yield store
        store.close()

    @pytest.fixture
    def second_store(self, clock: ManualClock, store: EventStore, tmp_path) -> Iterator[EventStore]:
        other = SqliteEventStore(tmp_path / "events.db", clock)
        yield other
        other.close()
