"""Money is conserved: random payments, conversions, bills, payouts, refunds and repeats.

Every operation goes to a LedgerService over a MemoryEventStore and to the reference
:class:`Ledger` (hero/domain/ledger.py); after every step the books fold from the store to
zero per currency, no guarded account is negative, and the service agrees with the model.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import event as note
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hero.domain.clock import ManualClock
from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    Ledger,
    RevenueSplit,
    Transfer,
    account_id,
    split_revenue,
)
from hero.payments.ledger import LedgerService, read_ledger
from hero.store import MemoryEventStore
from schemas import Currency, Event, FiatConverted, Money, TransferKind
from tests.unit.store_contract import CLOCK_START

OFFTAKERS = ["acme", "globex"]
FARMERS = ["farm-1", "farm-2"]
PROVIDERS = ["stripe", "wise"]
TREASURY = account_id(AccountKind.TREASURY, "cooperative", "USD")
FX_USD = account_id(AccountKind.WORLD, "fx", "USD")
FX_TFT = account_id(AccountKind.WORLD, "fx", "TFT")
CHAIN = account_id(AccountKind.WORLD, "chain", "TFT")
POOL = account_id(AccountKind.POOL, "pool-1", "TFT")
THREEFOLD = account_id(AccountKind.THREEFOLD, "threefold", "TFT")
SPLITS = [
    RevenueSplit(),
    RevenueSplit(Decimal("0.8"), Decimal("0.1"), Decimal("0.1")),
    RevenueSplit(Decimal("0.5"), Decimal("0.25"), Decimal("0.25")),
]
RATES = [Decimal(40), Decimal("37.1234567"), Decimal(1)]


def quanta(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: Decimal(n).scaleb(-7))


#: a few smallest units, any amount up to 100, or a round amount up to 500
AMOUNTS = st.one_of(quanta(1, 20), quanta(1, 10**9), st.integers(1, 500).map(Decimal))
#: a fixed amount, or (more often) a share of the payer's balance: all of it, or just too much
PERCENT = st.one_of(st.integers(1, 101), st.sampled_from([100, 101])).map(Decimal)
SIZES = st.one_of(
    st.tuples(st.just("fixed"), AMOUNTS),
    st.tuples(st.just("percent"), PERCENT),
    st.tuples(st.just("percent"), PERCENT),
)


def offtaker(name: str) -> str:
    return account_id(AccountKind.OFFTAKER, name, "TFT")


def farmer(name: str) -> str:
    return account_id(AccountKind.FARMER, name, "TFT")


def reference_post(ledger: Ledger, transfers: list[Transfer]) -> str:
    """Post all of ``transfers`` or none: 'posted', 'duplicate' or the refusal's reason."""
    trial = Ledger(dict(ledger.accounts), set(ledger.applied))
    try:
        fresh = [trial.post(item) for item in transfers]
    except Rejected as refused:
        return refused.reason
    assert len(set(fresh)) == 1, "a post is new or a repeat as a whole"
    ledger.accounts, ledger.applied = trial.accounts, trial.applied
    return "posted" if fresh[0] else "duplicate"


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(CLOCK_START)
        self.store = MemoryEventStore(self.clock)
        self.service = LedgerService(self.store, self.clock)
        self.reference = Ledger()
        self.issued: list[tuple[str, list[Transfer], list[tuple[str, Event]]]] = []
        self.posted_by: dict[str, str] = {}  # transfer id -> the command that posted it
        self.count = 0

    # --- helpers ---------------------------------------------------------------------------

    def _command(self, kind: str) -> str:
        self.count += 1
        return f"{kind}-{self.count}"

    def _amount(self, payer: str, size: tuple[str, Decimal]) -> Money:
        currency = self.reference.balance(payer).currency
        how, value = size
        if how == "fixed":
            return Money(amount=value, currency=currency)
        share = self.reference.balance(payer).times(value / 100, ROUND_DOWN)
        return share if share.amount > 0 else Money(amount=currency.quantum, currency=currency)

    def _post(
        self,
        command_id: str,
        transfers: list[Transfer],
        records: list[tuple[str, Event]] | None = None,
        *,
        reused: bool = False,
    ) -> None:
        """Post to both; ``reused``: transfers seen before, under a command id of their own."""
        records = records or []
        position = self.store.current_position()
        expected = reference_post(self.reference, transfers)
        if reused and expected == "duplicate":
            # the model skips an applied transfer id; the service refuses it under a new command
            # (or refuses on the rules first, checked before the store sees the id): no writes
            note(f"reused: {expected}")
            with pytest.raises(Rejected):
                self.service.post(transfers, command_id, records=records)
            assert self.store.current_position() == position, "a reused transfer id was written"
            return
        note(f"{command_id.split('-')[0]}: {expected}")
        if expected == "duplicate" and any(
            self.posted_by.get(t.transfer_id) != command_id for t in transfers
        ):
            # the transfers were posted under another command (a reuse): the service refuses
            # the id again rather than call this command a repeat
            with pytest.raises(Rejected, match="duplicate_transfer"):
                self.service.post(transfers, command_id, records=records)
            assert self.store.current_position() == position, "a reused transfer id was written"
            return
        if expected not in ("posted", "duplicate"):
            with pytest.raises(Rejected) as refused:
                self.service.post(transfers, command_id, records=records)
            assert refused.value.reason == expected
            assert self.store.current_position() == position, "a refused post wrote something"
        elif expected == "duplicate":
            assert self.service.post(transfers, command_id, records=records).duplicate
            assert self.store.current_position() == position, "a repeat wrote something"
        else:
            assert not self.service.post(transfers, command_id, records=records).duplicate
            written = self.store.current_position() - position
            assert written == 2 * len(transfers) + len(records)
            self.posted_by.update((t.transfer_id, command_id) for t in transfers)
            for stream, event in records:
                assert self.store.read_stream(stream)[-1].envelope().decode() == event
        if not reused:
            self.issued.append((command_id, transfers, records))

    # --- operations ---------------------------------------------------------------------------

    @initialize(amount=st.integers(1, 10**4).map(Decimal), rate=st.sampled_from(RATES))
    def seed(self, amount: Decimal, rate: Decimal) -> None:
        """Fiat in and converted for both offtakers, so bills and payouts have funds early."""
        self.fiat_payment("stripe", amount)
        for name in OFFTAKERS:
            self.conversion(name, ("percent", Decimal(50)), rate)

    @rule(provider=st.sampled_from(PROVIDERS), amount=AMOUNTS)
    def fiat_payment(self, provider: str, amount: Decimal) -> None:
        command = self._command("pay")
        world = account_id(AccountKind.WORLD, provider, "USD")
        money = Money(amount=amount, currency=Currency.USD)
        self._post(
            command, [Transfer(command, world, TREASURY, money, TransferKind.PAYMENT, command)]
        )

    @rule(to=st.sampled_from(OFFTAKERS), size=SIZES, rate=st.sampled_from(RATES))
    def conversion(self, to: str, size: tuple[str, Decimal], rate: Decimal) -> None:
        command = self._command("conv")
        fiat = self._amount(TREASURY, size)
        tft = Money.rounded(fiat.amount * rate, Currency.TFT, ROUND_DOWN)
        kind = TransferKind.CONVERSION
        record = FiatConverted(
            payment_id=command, quote_id=f"q-{command}", offtaker_id=to, fiat=fiat, tft=tft
        )
        self._post(
            command,
            [
                Transfer(f"{command}:usd", TREASURY, FX_USD, fiat, kind, command),
                Transfer(f"{command}:tft", FX_TFT, offtaker(to), tft, kind, command),
            ],
            [(f"conversion-{command}", record)],
        )

    @rule(
        payer=st.sampled_from(OFFTAKERS),
        payee=st.sampled_from(FARMERS),
        size=SIZES,
        split=st.sampled_from(SPLITS),
    )
    def bill(self, payer: str, payee: str, size: tuple[str, Decimal], split: RevenueSplit) -> None:
        command = self._command("bill")
        amount = self._amount(offtaker(payer), size)
        shares = split_revenue(amount, split)
        assert shares[0] + shares[1] + shares[2] == amount
        self._post(
            command,
            [
                Transfer(
                    f"{command}:{n}", offtaker(payer), account, share, TransferKind.BILL, command
                )
                for n, (account, share) in enumerate(
                    zip((farmer(payee), POOL, THREEFOLD), shares, strict=True)
                )
                if share.amount > 0  # a unit too small to share leaves the pool out
            ],
        )

    @rule(payee=st.sampled_from(FARMERS), size=SIZES)
    def payout(self, payee: str, size: tuple[str, Decimal]) -> None:
        command = self._command("payout")
        amount = self._amount(farmer(payee), size)
        transfer = Transfer(command, farmer(payee), CHAIN, amount, TransferKind.PAYOUT, command)
        self._post(command, [transfer])

    @rule(payer=st.sampled_from(OFFTAKERS), size=SIZES)
    def refund(self, payer: str, size: tuple[str, Decimal]) -> None:
        command = self._command("refund")
        amount = self._amount(offtaker(payer), size)
        transfer = Transfer(command, offtaker(payer), CHAIN, amount, TransferKind.REFUND, command)
        self._post(command, [transfer])

    @rule(payer=st.sampled_from(OFFTAKERS), how=st.sampled_from(["usd", "self", "zero"]))
    def malformed(self, payer: str, how: str) -> None:
        command = self._command("bad")
        account = offtaker(payer)
        amount, credit = {
            "usd": (Money.of(1, "USD"), POOL),
            "self": (Money.of(1, "TFT"), account),
            "zero": (Money.of(0, "TFT"), POOL),
        }[how]
        self._post(
            command, [Transfer(command, account, credit, amount, TransferKind.BILL, command)]
        )

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        """A command seen before, sent again: a duplicate if it was posted, else decided anew."""
        command, transfers, records = data.draw(st.sampled_from(self.issued), label="repeat")
        self._post(command, transfers, records)

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def reuse(self, data: st.DataObject) -> None:
        """Transfers seen before, under a new command id: refused if they were posted."""
        _, transfers, records = data.draw(st.sampled_from(self.issued), label="reuse")
        self._post(self._command("reuse"), transfers, records, reused=True)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        folded = read_ledger(self.store)
        assert all(total == 0 for total in folded.totals().values()), folded.totals()
        for state in folded.accounts.values():
            if state.guarded:
                assert not state.balance.is_negative, state
        assert folded.accounts == self.reference.accounts
        assert folded.applied == self.reference.applied

    @invariant()
    def the_service_agrees_with_the_model(self) -> None:
        fresh = LedgerService(self.store, self.clock)  # folds from the streams, no cache
        for account, state in self.reference.accounts.items():
            assert self.service.account(account) == state
            assert fresh.account(account) == state


LedgerMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, print_blob=True
)
TestLedgerMachine = LedgerMachine.TestCase
