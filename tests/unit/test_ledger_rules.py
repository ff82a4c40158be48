"""The pure double-entry rules of hero/domain/ledger.py: accounts, guards, the revenue split."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hero.domain.errors import Rejected
from hero.domain.ledger import (
    AccountKind,
    AccountState,
    Ledger,
    RevenueSplit,
    Transfer,
    account_currency,
    account_id,
    account_kind,
    account_stream,
    check_transfer,
    split_revenue,
)
from schemas import Currency, Money, TransferKind

WORLD_TFT = account_id(AccountKind.WORLD, "chain", "TFT")
WORLD_USD = account_id(AccountKind.WORLD, "stripe", "USD")
ACME = account_id(AccountKind.OFFTAKER, "acme", "TFT")
FARMER = account_id(AccountKind.FARMER, "farm-1", "TFT")
TREASURY_USD = account_id(AccountKind.TREASURY, "cooperative", "USD")

GUARDED_KINDS = [kind for kind in AccountKind if kind is not AccountKind.WORLD]


def tft(amount: str | int) -> Money:
    return Money.of(amount, "TFT")


def transfer(
    transfer_id: str,
    debit: str,
    credit: str,
    amount: Money,
    kind: TransferKind = TransferKind.BILL,
) -> Transfer:
    return Transfer(transfer_id, debit, credit, amount, kind, reference=f"ref-{transfer_id}")


def snapshot(ledger: Ledger) -> tuple[dict[str, AccountState], set[str]]:
    return dict(ledger.accounts), set(ledger.applied)


@pytest.fixture
def funded() -> Ledger:
    """acme holds 10 TFT, paid in from the chain's world account."""
    ledger = Ledger()
    assert ledger.post(transfer("fund", WORLD_TFT, ACME, tft("10"), TransferKind.PAYMENT))
    return ledger


# --- account ids, kinds and currencies -------------------------------------------------------


class TestAccounts:
    def test_an_account_id_is_kind_owner_currency(self):
        assert account_id(AccountKind.OFFTAKER, "acme", Currency.TFT) == "offtaker.acme.TFT"
        assert account_id("farmer", "farm-7", "USD") == "farmer.farm-7.USD"
        assert account_id("pool", "p1") == "pool.p1.TFT"  # TFT unless told otherwise

    @pytest.mark.parametrize(("kind", "currency"), [("bogus", "TFT"), ("offtaker", "GBP")])
    def test_an_unknown_kind_or_currency_is_no_account_id(self, kind, currency):
        with pytest.raises(ValueError, match="is not a valid"):
            account_id(kind, "acme", currency)

    def test_kind_and_currency_are_read_back_from_the_id(self):
        assert account_kind("offtaker.acme.TFT") is AccountKind.OFFTAKER
        assert account_currency("offtaker.acme.TFT") is Currency.TFT
        # an owner may carry dots: the kind is before the first one, the currency after the last
        assert account_kind("farmer.farm.eu.1.USD") is AccountKind.FARMER
        assert account_currency("farmer.farm.eu.1.USD") is Currency.USD

    @pytest.mark.parametrize("account", ["bogus.acme.TFT", "Offtaker.acme.TFT", "", "TFT"])
    def test_an_unknown_kind_is_rejected(self, account):
        with pytest.raises(Rejected) as refused:
            account_kind(account)
        assert refused.value.reason == "unknown_account"

    @pytest.mark.parametrize("account", ["offtaker.acme.GBP", "offtaker.acme.tft", "offtaker"])
    def test_an_unknown_currency_is_rejected(self, account):
        with pytest.raises(Rejected) as refused:
            account_currency(account)
        assert refused.value.reason == "unknown_account"

    def test_only_the_world_may_go_negative(self):
        assert AccountKind.WORLD.guarded is False
        assert len(GUARDED_KINDS) == len(AccountKind) - 1
        assert all(kind.guarded for kind in GUARDED_KINDS)
        assert AccountState.empty(WORLD_USD).guarded is False
        assert AccountState.empty(ACME).guarded is True

    def test_an_empty_account_holds_zero_in_its_own_currency(self):
        state = AccountState.empty(TREASURY_USD)
        assert state.balance == Money.zero("USD")
        assert state.balance.currency is Currency.USD
        assert state.transfers == 0

    def test_an_empty_account_of_an_unknown_currency_is_rejected(self):
        with pytest.raises(Rejected):
            AccountState.empty("offtaker.acme.GBP")

    def test_each_account_is_its_own_stream(self):
        assert account_stream(ACME) == "account-offtaker.acme.TFT"
        assert account_stream(ACME) != account_stream(FARMER)


# --- check_transfer: every refusal, nothing changed --------------------------------------------


class TestCheckTransfer:
    @pytest.mark.parametrize(
        ("bad", "reason"),
        [
            (transfer("t-usd", ACME, FARMER, Money.of("1", "USD")), "currency_mismatch"),
            (transfer("t-mixed", ACME, TREASURY_USD, tft("1")), "currency_mismatch"),
            (
                transfer("t-mixed-usd", ACME, TREASURY_USD, Money.of("1", "USD")),
                "currency_mismatch",
            ),
            (transfer("t-self", ACME, ACME, tft("1")), "same_account"),
            (transfer("t-zero", ACME, FARMER, tft("0")), "amount_not_positive"),
            (transfer("t-neg", ACME, FARMER, tft("-1")), "amount_not_positive"),
            (transfer("t-much", ACME, FARMER, tft("10.0000001")), "insufficient_funds"),
            (transfer("t-empty", FARMER, ACME, tft("0.0000001")), "insufficient_funds"),
            (transfer("t-unknown", "bogus.x.TFT", FARMER, tft("1")), "unknown_account"),
            (transfer("t-unknown-credit", ACME, "offtaker.x.GBP", tft("1")), "unknown_account"),
            (transfer("t-unknown-kind", ACME, "bogus.x.TFT", tft("1")), "unknown_account"),
        ],
    )
    def test_a_refused_transfer_changes_nothing(self, funded, bad, reason):
        before = snapshot(funded)
        with pytest.raises(Rejected) as refused:
            funded.post(bad)
        assert refused.value.reason == reason
        assert snapshot(funded) == before
        assert bad.transfer_id not in funded.applied
        assert funded.balance(ACME) == tft("10")
        assert funded.balance(FARMER) == tft("0")

    def test_check_transfer_alone_refuses_with_the_same_reasons(self):
        debit = AccountState(ACME, tft("1"))
        check_transfer(transfer("ok", ACME, FARMER, tft("1")), debit)  # all of it: allowed
        with pytest.raises(Rejected, match="insufficient_funds"):
            check_transfer(transfer("no", ACME, FARMER, tft("1.0000001")), debit)
        with pytest.raises(Rejected, match="same_account"):
            check_transfer(transfer("self", ACME, ACME, tft("1")), debit)

    def test_the_currency_is_checked_first(self):
        # wrong currency, same account, zero amount: the currency is what is reported
        with pytest.raises(Rejected) as refused:
            check_transfer(
                transfer("t", ACME, ACME, Money.of("0", "USD")), AccountState.empty(ACME)
            )
        assert refused.value.reason == "currency_mismatch"

    def test_an_account_may_be_spent_down_to_exactly_zero(self, funded):
        assert funded.post(transfer("all", ACME, FARMER, tft("10")))
        assert funded.balance(ACME) == tft("0")
        assert funded.balance(FARMER) == tft("10")

    @pytest.mark.parametrize("kind", GUARDED_KINDS)
    def test_no_guarded_kind_can_pay_from_nothing(self, kind):
        ledger = Ledger()
        account = account_id(kind, "someone", "TFT")
        with pytest.raises(Rejected) as refused:
            ledger.post(transfer("t", account, WORLD_TFT, tft("0.0000001")))
        assert refused.value.reason == "insufficient_funds"
        assert ledger.accounts == {}

    def test_the_world_goes_negative(self):
        ledger = Ledger()
        assert ledger.post(transfer("in", WORLD_USD, TREASURY_USD, Money.of("250", "USD")))
        assert ledger.balance(WORLD_USD) == Money.of("-250", "USD")
        assert ledger.balance(TREASURY_USD) == Money.of("250", "USD")
        assert ledger.totals() == {Currency.USD: Decimal(0)}


# --- post: once per transfer id ----------------------------------------------------------------


class TestPostOnce:
    def test_a_repeated_transfer_id_returns_false_and_changes_nothing(self, funded):
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("4"))) is True
        before = snapshot(funded)
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("4"))) is False
        # the id is what counts: another amount or account under the same id is still a repeat
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("5"))) is False
        assert funded.post(transfer("bill-1", WORLD_TFT, ACME, tft("1"))) is False
        assert snapshot(funded) == before
        assert funded.balance(ACME) == tft("6")
        assert funded.state(ACME).transfers == 2

    def test_a_repeat_is_not_checked_again(self, funded):
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("10")))
        # acme is empty now; the repeat is answered from the applied ids, not refused
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("10"))) is False

    def test_a_refused_transfer_id_may_be_posted_once_funds_arrive(self, funded):
        with pytest.raises(Rejected):
            funded.post(transfer("bill-1", ACME, FARMER, tft("15")))
        assert funded.post(transfer("top-up", WORLD_TFT, ACME, tft("5"), TransferKind.PAYMENT))
        assert funded.post(transfer("bill-1", ACME, FARMER, tft("15"))) is True
        assert funded.balance(ACME) == tft("0")

    def test_apply_counts_an_event_once(self, funded):
        event = transfer("bill-1", ACME, FARMER, tft("3")).event()
        funded.apply(event)
        funded.apply(event)
        funded.apply_all([event, event])
        assert funded.balance(FARMER) == tft("3")
        assert funded.state(FARMER).transfers == 1

    def test_totals_are_zero_per_currency(self, funded):
        funded.post(transfer("usd", WORLD_USD, TREASURY_USD, Money.of("12.5", "USD")))
        funded.post(transfer("bill", ACME, FARMER, tft("2.0000001")))
        assert funded.totals() == {Currency.TFT: Decimal(0), Currency.USD: Decimal(0)}


# --- the revenue split -------------------------------------------------------------------------

DEFAULT = RevenueSplit()
EIGHTY = RevenueSplit(Decimal("0.8"), Decimal("0.1"), Decimal("0.1"))
HALF = RevenueSplit(Decimal("0.5"), Decimal("0.25"), Decimal("0.25"))


class TestSplitRevenue:
    def test_the_default_split_is_60_20_20(self):
        assert (DEFAULT.farmer, DEFAULT.pool, DEFAULT.threefold) == (
            Decimal("0.6"),
            Decimal("0.2"),
            Decimal("0.2"),
        )

    @pytest.mark.parametrize(
        ("split", "amount", "farmer", "pool", "threefold"),
        [
            # 60/20/20: pool and ThreeFold rounded down to 1e-7, the farmer takes the rest
            (DEFAULT, "100", "60", "20", "20"),
            (DEFAULT, "0.0000001", "0.0000001", "0", "0"),  # 0.2 unit each rounds to 0
            (DEFAULT, "0.0000004", "0.0000004", "0", "0"),  # 0.8 unit rounds down, not up
            (DEFAULT, "0.0000005", "0.0000003", "0.0000001", "0.0000001"),
            (DEFAULT, "0.0000009", "0.0000007", "0.0000001", "0.0000001"),  # 5.4 units: 7
            (DEFAULT, "1.0000003", "0.6000003", "0.2", "0.2"),
            (DEFAULT, "10.0000009", "6.0000007", "2.0000001", "2.0000001"),
            # 80/10/10
            (EIGHTY, "100", "80", "10", "10"),
            (EIGHTY, "1.0000003", "0.8000003", "0.1", "0.1"),
            (EIGHTY, "0.0000019", "0.0000017", "0.0000001", "0.0000001"),
            (EIGHTY, "0.0000009", "0.0000009", "0", "0"),
            # 50/25/25
            (HALF, "100", "50", "25", "25"),
            (HALF, "1", "0.5", "0.25", "0.25"),
            (HALF, "0.0000003", "0.0000003", "0", "0"),
            (HALF, "0.0000007", "0.0000005", "0.0000001", "0.0000001"),
            (HALF, "1.0000003", "0.5000003", "0.25", "0.25"),  # 0.25000007 -> 0.25
        ],
    )
    def test_exact_shares_and_the_remainder_rule(self, split, amount, farmer, pool, threefold):
        shares = split_revenue(tft(amount), split)
        assert shares == (tft(farmer), tft(pool), tft(threefold))
        assert shares[0] + shares[1] + shares[2] == tft(amount)

    def test_the_split_keeps_the_currency(self):
        farmer, pool, threefold = split_revenue(Money.of("0.0000009", "USD"), DEFAULT)
        assert {farmer.currency, pool.currency, threefold.currency} == {Currency.USD}
        assert farmer == Money.of("0.0000007", "USD")

    def test_a_split_with_zero_shares_gives_the_farmer_everything(self):
        everything = RevenueSplit(Decimal(1), Decimal(0), Decimal(0))
        assert split_revenue(tft("1.2345678"), everything) == (tft("1.2345678"), tft(0), tft(0))

    @pytest.mark.parametrize(
        "parts",
        [
            ("0.5", "0.3", "0.3"),  # 1.1
            ("0.6", "0.2", "0.1"),  # 0.9
            ("1.2", "-0.1", "-0.1"),  # sums to 1, negative shares
            ("-0.2", "0.6", "0.6"),
            ("0.6000001", "0.2", "0.2"),
        ],
    )
    def test_a_bad_split_is_refused(self, parts):
        with pytest.raises(ValueError, match="summing to 1"):
            RevenueSplit(*(Decimal(part) for part in parts))

    @settings(max_examples=200, deadline=None)
    @given(
        units=st.integers(min_value=1, max_value=10**17),
        split=st.sampled_from([DEFAULT, EIGHTY, HALF]),
    )
    def test_shares_always_sum_exactly_and_the_farmer_gets_the_rounding(self, units, split):
        amount = Money(amount=Decimal(units).scaleb(-7), currency=Currency.TFT)
        farmer, pool, threefold = split_revenue(amount, split)
        assert farmer + pool + threefold == amount
        assert not any(share.is_negative for share in (farmer, pool, threefold))
        unit = Currency.TFT.quantum
        # pool and ThreeFold: the exact share rounded down, i.e. within one unit below it
        for share, fraction in ((pool, split.pool), (threefold, split.threefold)):
            exact = amount.amount * fraction
            assert share.amount <= exact < share.amount + unit
        # so the farmer holds at least the exact share, and at most two units more
        exact_farmer = amount.amount * split.farmer
        assert exact_farmer <= farmer.amount < exact_farmer + 2 * unit
