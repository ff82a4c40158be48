"""Pricing policies, staking discounts and hourly costs, worked by hand (DOMAIN.md "Pricing and
billing"; tfchain cost.rs).

CU = min(max(mru/4, cru/2), max(mru/8, cru), max(mru/2, cru/4))      mru in GB (1024^3 B)
SU = hru/1200 + sru/200                                               disks in GB

               CU/h      SU/h      NU/GB    IPv4/h    name/h     (USD)
genesis        0.010     0.005     0.0015   0.004     0.00025
manual         0.03056   0.01944   0.05     0.00694   0.00139

cost/h = ((CU*cu + SU*su) * dedicated + ipv4*ip + GB*nu) * certified * staking
         dedicated 0.5 (on CU and SU only, as TFChain's rent contract), certified 1.25,
         rounded once at the end to 7 places; a month is 720 hours of the unrounded cost.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from hero.domain.pricing import (
    GENESIS,
    GENESIS_CU_HOUR,
    GENESIS_IPV4_HOUR,
    GENESIS_NU_GB,
    GENESIS_SU_HOUR,
    GENESIS_UNIQUE_NAME_HOUR,
    MANUAL,
    HourlyCost,
    PolicyFileError,
    PricingPolicy,
    UnknownPricingPolicy,
    hourly_cost,
    load_policies,
    policy_named,
    reference_price_hour,
    staking_discount,
)
from schemas import CurrencyMismatch, Money, Resources


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def tft(amount: str) -> Money:
    return Money.of(amount, "TFT")


# small VM, 2 vCPU / 4 GB / 50 GB SSD:
#   CU = min(max(4/4, 2/2), max(4/8, 2), max(4/2, 2/4)) = min(1, 2, 2) = 1
#   SU = 50/200 = 0.25
SMALL = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
#
# full node, 64 cores / 256 GB / 4 TB SSD / 12 TB HDD (TB = 1000 GB here):
#   CU = min(max(256/4, 64/2), max(256/8, 64), max(256/2, 64/4))
#      = min(max(64, 32), max(32, 64), max(128, 16)) = min(64, 64, 128) = 64
#   SU = 12000/1200 + 4000/200 = 10 + 20 = 30
FULL_NODE = Resources.from_gb(cru=64, mru_gb=256, sru_gb=4000, hru_gb=12000)
#
# 1000 GB of HDD alone: CU = 0, SU = 1000/1200 = 5/6
HDD_1000 = Resources.from_gb(hru_gb=1000)


# -- the shipped policies -------------------------------------------------------------------------


def test_genesis_holds_the_chain_spec_prices():
    # 10, 5, 1.5, 4 and 0.25 mUSD -> USD
    assert GENESIS.name == "genesis"
    assert GENESIS.cu_hour == usd("0.010")
    assert GENESIS.su_hour == usd("0.005")
    assert GENESIS.nu_gb == usd("0.0015")
    assert GENESIS.ipv4_hour == usd("0.004")
    assert GENESIS.unique_name_hour == usd("0.00025")
    assert (GENESIS.certified_factor, GENESIS.dedicated_discount) == (
        Decimal("1.25"),
        Decimal("0.5"),
    )


def test_manual_holds_the_info_grid_prices():
    # 30.56, 19.44, 50, 6.94 and 1.39 mUSD -> USD
    assert MANUAL.name == "manual"
    assert MANUAL.cu_hour == usd("0.03056")
    assert MANUAL.su_hour == usd("0.01944")
    assert MANUAL.nu_gb == usd("0.05")
    assert MANUAL.ipv4_hour == usd("0.00694")
    assert MANUAL.unique_name_hour == usd("0.00139")


def test_the_genesis_constants_are_the_genesis_policy():
    assert GENESIS.cu_hour == GENESIS_CU_HOUR
    assert GENESIS.su_hour == GENESIS_SU_HOUR
    assert GENESIS.ipv4_hour == GENESIS_IPV4_HOUR
    assert GENESIS.nu_gb == GENESIS_NU_GB
    assert GENESIS.unique_name_hour == GENESIS_UNIQUE_NAME_HOUR


def test_manual_month_prices_match_the_manual():
    # 22, 14 and 5 USD a month: 0.03056 * 720 = 22.0032, 0.01944 * 720 = 13.9968,
    # 0.00694 * 720 = 4.9968 -- the per-hour figures are those monthly prices rounded.
    assert MANUAL.cu_hour.times(720) == usd("22.0032")
    assert MANUAL.su_hour.times(720) == usd("13.9968")
    assert MANUAL.ipv4_hour.times(720) == usd("4.9968")


# -- policy validation ----------------------------------------------------------------------------


def policy_data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "cheap",
        "cu_hour": {"amount": "0.02", "currency": "USD"},
        "su_hour": {"amount": "0.01", "currency": "USD"},
        "nu_gb": {"amount": "0.001", "currency": "USD"},
        "ipv4_hour": {"amount": "0.003", "currency": "USD"},
        "unique_name_hour": {"amount": "0.0002", "currency": "USD"},
    }
    return {**data, **changes}


def test_a_policy_refuses_a_price_not_in_usd():
    with pytest.raises(ValidationError) as caught:
        PricingPolicy.model_validate(policy_data(cu_hour={"amount": "0.5", "currency": "TFT"}))
    assert caught.value.errors()[0]["loc"] == ("cu_hour",)
    assert "prices must be in USD, got TFT" in str(caught.value)


def test_a_policy_refuses_a_negative_price():
    with pytest.raises(ValidationError, match="cannot be negative"):
        PricingPolicy.model_validate(policy_data(su_hour={"amount": "-0.01", "currency": "USD"}))


def test_a_policy_refuses_float_factors():
    with pytest.raises(ValidationError, match="not a float"):
        PricingPolicy.model_validate(policy_data(certified_factor=1.25))


@pytest.mark.parametrize("discount", ["0", "1.5", "-0.5"])
def test_a_dedicated_discount_is_a_fraction_of_the_price(discount):
    with pytest.raises(ValidationError, match="dedicated_discount"):
        PricingPolicy.model_validate(policy_data(dedicated_discount=discount))


def test_a_policy_is_frozen():
    with pytest.raises(ValidationError):
        GENESIS.name = "other"  # type: ignore[misc]


# -- policy_named ---------------------------------------------------------------------------------


def test_policy_named_finds_the_shipped_and_the_custom_policies():
    cheap = PricingPolicy.model_validate(policy_data())
    assert policy_named("genesis") is GENESIS
    assert policy_named("manual") is MANUAL
    assert policy_named("cheap", {"cheap": cheap}) is cheap


def test_policy_named_refuses_an_unknown_name_listing_the_known_ones():
    cheap = PricingPolicy.model_validate(policy_data())
    with pytest.raises(UnknownPricingPolicy) as caught:
        policy_named("premium", {"cheap": cheap})
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == "unknown pricing policy 'premium'; known: cheap, genesis, manual"
    assert caught.value.known == ["cheap", "genesis", "manual"]


def test_policy_named_is_exact_about_names():
    with pytest.raises(UnknownPricingPolicy, match="known: genesis, manual"):
        policy_named("Genesis")


def test_a_shipped_name_cannot_be_shadowed():
    impostor = PricingPolicy.model_validate(policy_data(name="genesis"))
    assert policy_named("genesis", {"genesis": impostor}) is GENESIS


# -- staking_discount -----------------------------------------------------------------------------
# monthly cost 100 TFT: each level at its boundary, and 1e-7 TFT (one TFChain unit) below it.


@pytest.mark.parametrize(
    ("balance", "factor"),
    [
        ("0", "1"),
        ("149.9999999", "1"),  # 1.4999999999 months: no discount
        ("150", "0.8"),  # 1.5 months
        ("299.9999999", "0.8"),
        ("300", "0.7"),  # 3 months
        ("599.9999999", "0.7"),
        ("600", "0.6"),  # 6 months
        ("1799.9999999", "0.6"),
        ("1800", "0.4"),  # 18 months
        ("1000000", "0.4"),  # 10,000 months: gold stays 0.4
    ],
)
def test_staking_discount_levels(balance, factor):
    assert staking_discount(tft(balance), tft("100")) == Decimal(factor)


def test_staking_discount_boundaries_are_exact_for_odd_costs():
    # 1.5 * 0.0000001 = 0.00000015: compared exactly, not rounded to 7 places first
    assert staking_discount(tft("0.0000002"), tft("0.0000001")) == Decimal("0.8")
    assert staking_discount(tft("0.0000001"), tft("0.0000001")) == Decimal(1)
    # 3 * 33.3333333 = 99.9999999
    assert staking_discount(tft("99.9999999"), tft("33.3333333")) == Decimal("0.7")


def test_staking_discount_of_nothing_to_pay_is_none():
    assert staking_discount(tft("5000"), tft("0")) == Decimal(1)
    assert staking_discount(tft("0"), tft("0")) == Decimal(1)


def test_staking_discount_wants_one_currency_and_no_negatives():
    with pytest.raises(CurrencyMismatch):
        staking_discount(tft("1000"), usd("10"))
    with pytest.raises(ValueError, match="negative"):
        staking_discount(tft("-1"), tft("10"))
    with pytest.raises(ValueError, match="negative"):
        staking_discount(tft("1"), tft("-10"))


# -- hourly_cost: worked examples -----------------------------------------------------------------


def test_small_vm_on_genesis():
    # compute 1 * 0.010 = 0.010; storage 0.25 * 0.005 = 0.00125
    # hour 0.01125; month 0.01125 * 720 = 8.1
    cost = hourly_cost(SMALL)
    assert (cost.cu, cost.su) == (Decimal(1), Decimal("0.25"))
    assert (cost.compute, cost.storage) == (usd("0.01"), usd("0.00125"))
    assert (cost.ipv4, cost.network) == (usd("0"), usd("0"))
    assert cost.list_hour == usd("0.01125")
    assert cost.usd_hour == usd("0.01125")
    assert cost.usd_month == usd("8.1")
    assert cost.policy == "genesis"


def test_small_vm_on_manual():
    # compute 1 * 0.03056 = 0.03056; storage 0.25 * 0.01944 = 0.00486
    # hour 0.03542; month 0.03542 * 720 = 25.5024
    cost = hourly_cost(SMALL, MANUAL)
    assert (cost.compute, cost.storage) == (usd("0.03056"), usd("0.00486"))
    assert cost.usd_hour == usd("0.03542")
    assert cost.usd_month == usd("25.5024")


def test_full_node_rented_dedicated_on_genesis():
    # list: 64 * 0.010 + 30 * 0.005 = 0.64 + 0.15 = 0.79
    # dedicated: 0.79 * 0.5 = 0.395 an hour; 0.395 * 720 = 284.4 a month
    cost = hourly_cost(FULL_NODE, dedicated=True)
    assert (cost.cu, cost.su) == (Decimal(64), Decimal(30))
    assert cost.list_hour == usd("0.79")
    assert cost.dedicated_factor == Decimal("0.5")
    assert cost.usd_hour == usd("0.395")
    assert cost.usd_month == usd("284.4")


def test_full_node_rented_dedicated_on_manual():
    # list: 64 * 0.03056 + 30 * 0.01944 = 1.95584 + 0.5832 = 2.53904
    # dedicated: 2.53904 * 0.5 = 1.26952 an hour; 1.26952 * 720 = 914.0544 a month
    cost = hourly_cost(FULL_NODE, MANUAL, dedicated=True)
    assert (cost.compute, cost.storage) == (usd("1.95584"), usd("0.5832"))
    assert cost.usd_hour == usd("1.26952")
    assert cost.usd_month == usd("914.0544")


def test_certified_small_vm():
    # genesis: 0.01125 * 1.25 = 0.0140625 an hour; * 720 = 10.125 a month
    cost = hourly_cost(SMALL, certified=True)
    assert cost.certified_factor == Decimal("1.25")
    assert cost.list_hour == usd("0.01125")
    assert cost.usd_hour == usd("0.0140625")
    assert cost.usd_month == usd("10.125")
    # manual: 0.03542 * 1.25 = 0.044275 an hour; * 720 = 31.878 a month
    manual = hourly_cost(SMALL, MANUAL, certified=True)
    assert (manual.usd_hour, manual.usd_month) == (usd("0.044275"), usd("31.878"))


def test_certified_full_node_rented_dedicated():
    # 0.79 * 0.5 * 1.25 = 0.49375 an hour; * 720 = 355.5 a month
    cost = hourly_cost(FULL_NODE, certified=True, dedicated=True)
    assert cost.usd_hour == usd("0.49375")
    assert cost.usd_month == usd("355.5")


def test_small_vm_with_two_ipv4():
    # genesis: 0.01125 + 2 * 0.004 = 0.01125 + 0.008 = 0.01925; * 720 = 13.86
    cost = hourly_cost(SMALL + Resources(ipv4=2))
    assert cost.ipv4 == usd("0.008")
    assert (cost.usd_hour, cost.usd_month) == (usd("0.01925"), usd("13.86"))
    # manual: 0.03542 + 2 * 0.00694 = 0.03542 + 0.01388 = 0.0493; * 720 = 35.496
    manual = hourly_cost(SMALL + Resources(ipv4=2), MANUAL)
    assert manual.ipv4 == usd("0.01388")
    assert (manual.usd_hour, manual.usd_month) == (usd("0.0493"), usd("35.496"))


def test_the_dedicated_discount_leaves_ipv4_at_full_price():
    # as TFChain: the rent contract bills CU and SU at 50%, IPs stay on the node contracts
    # 0.79 * 0.5 + 2 * 0.004 = 0.395 + 0.008 = 0.403 (not 0.798 * 0.5 = 0.399)
    cost = hourly_cost(FULL_NODE + Resources(ipv4=2), dedicated=True)
    assert cost.list_hour == usd("0.798")
    assert cost.usd_hour == usd("0.403")


def test_network_traffic():
    # genesis, 10 GB: 0.01125 + 10 * 0.0015 = 0.01125 + 0.015 = 0.02625; * 720 = 18.9
    cost = hourly_cost(SMALL, nu_gb=Decimal(10))
    assert cost.network == usd("0.015")
    assert (cost.usd_hour, cost.usd_month) == (usd("0.02625"), usd("18.9"))
    # manual, 10 GB: 0.03542 + 10 * 0.05 = 0.03542 + 0.5 = 0.53542
    assert hourly_cost(SMALL, MANUAL, nu_gb=Decimal(10)).usd_hour == usd("0.53542")
    # traffic alone, 0.5 GB on genesis: 0.5 * 0.0015 = 0.00075
    assert hourly_cost(Resources(), nu_gb=Decimal("0.5")).usd_hour == usd("0.00075")
    # certified applies to traffic too: (0.01125 + 0.015) * 1.25 = 0.0328125
    assert hourly_cost(SMALL, certified=True, nu_gb=Decimal(10)).usd_hour == usd("0.0328125")


@pytest.mark.parametrize(
    ("factor", "hour", "month"),
    [
        # the full node rented dedicated on genesis, 0.395 an hour, at each staking level
        ("1", "0.395", "284.4"),
        ("0.8", "0.316", "227.52"),  # 0.395 * 0.8
        ("0.7", "0.2765", "199.08"),  # 0.395 * 0.7
        ("0.6", "0.237", "170.64"),  # 0.395 * 0.6
        ("0.4", "0.158", "113.76"),  # 0.395 * 0.4
    ],
)
def test_staking_discount_applies_last(factor, hour, month):
    cost = hourly_cost(FULL_NODE, dedicated=True, discount=Decimal(factor))
    assert cost.discount_factor == Decimal(factor)
    assert (cost.usd_hour, cost.usd_month) == (usd(hour), usd(month))


def test_a_staking_discount_from_a_balance():
    # the small VM costs 8.1 USD a month; at 0.01 USD/TFT that is 810 TFT.
    # 1215 TFT is 1.5 months: x0.8 -> 0.01125 * 0.8 = 0.009 an hour, 6.48 a month
    factor = staking_discount(tft("1215"), tft("810"))
    cost = hourly_cost(SMALL, discount=factor)
    assert (cost.usd_hour, cost.usd_month) == (usd("0.009"), usd("6.48"))


def test_every_factor_at_once():
    # full node + 2 IPv4, genesis, certified, dedicated, 18 months staked (x0.4):
    #   (0.79 * 0.5 + 0.008) * 1.25 * 0.4 = 0.403 * 0.5 = 0.2015 an hour; * 720 = 145.08
    cost = hourly_cost(
        FULL_NODE + Resources(ipv4=2),
        certified=True,
        dedicated=True,
        discount=Decimal("0.4"),
    )
    assert (cost.usd_hour, cost.usd_month) == (usd("0.2015"), usd("145.08"))


def test_rounds_once_at_the_end():
    # 1000 GB HDD, certified, genesis: 5/6 * 0.005 * 1.25 = 0.00520833... -> 0.0052083
    # rounding the list price first would give 0.0041667 * 1.25 = 0.005208375 -> 0.0052084
    cost = hourly_cost(HDD_1000, certified=True)
    assert cost.storage == usd("0.0041667")  # the part, rounded on its own for display
    assert cost.usd_hour == usd("0.0052083")
    # and the month is 720 hours of the exact cost: 0.00520833... * 720 = 3.75 exactly,
    # not 0.0052083 * 720 = 3.749976
    assert cost.usd_month == usd("3.75")


def test_hourly_cost_at_genesis_without_factors_is_the_reference_price():
    shapes = [SMALL, FULL_NODE, HDD_1000, SMALL + Resources(ipv4=2), Resources()]
    for shape in shapes:
        assert hourly_cost(shape).usd_hour == reference_price_hour(shape)


def test_a_custom_policy_sets_its_own_factors():
    # cheap: 1 * 0.02 + 0.25 * 0.01 = 0.0225; certified x1.1 -> 0.02475
    cheap = PricingPolicy.model_validate(policy_data(certified_factor="1.1"))
    cost = hourly_cost(SMALL, cheap, certified=True)
    assert cost.policy == "cheap"
    assert cost.usd_hour == usd("0.02475")


def test_hourly_cost_is_a_frozen_record():
    cost = hourly_cost(SMALL)
    assert isinstance(cost, HourlyCost)
    with pytest.raises(AttributeError):
        cost.usd_hour = usd("1")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"discount": Decimal(0)}, "discount must be above 0"),
        ({"discount": Decimal("1.2")}, "at most 1"),
        ({"nu_gb": Decimal(-1)}, "nu_gb cannot be negative"),
    ],
)
def test_hourly_cost_refuses_bad_factors(changes, message):
    with pytest.raises(ValueError, match=message):
        hourly_cost(SMALL, **changes)


def test_hourly_cost_refuses_floats():
    with pytest.raises(TypeError, match="float"):
        hourly_cost(SMALL, discount=0.8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        hourly_cost(SMALL, nu_gb=1.5)  # type: ignore[arg-type]


# -- load_policies --------------------------------------------------------------------------------

TOML = """
[[policies]]
name = "cheap"
cu_hour = { amount = "0.02", currency = "USD" }
su_hour = { amount = 0.01, currency = "USD" }   # a bare number: read as an exact Decimal
nu_gb = { amount = "0.001", currency = "USD" }
ipv4_hour = { amount = "0.003", currency = "USD" }
unique_name_hour = { amount = "0.0002", currency = "USD" }
certified_factor = "1.1"

[[policies]]
name = "premium"
cu_hour = { amount = "0.05", currency = "USD" }
su_hour = { amount = "0.02", currency = "USD" }
nu_gb = { amount = "0.01", currency = "USD" }
ipv4_hour = { amount = "0.01", currency = "USD" }
unique_name_hour = { amount = "0.001", currency = "USD" }
dedicated_discount = 0.6
"""


def test_load_policies_from_toml(tmp_path: Path):
    path = tmp_path / "policies.toml"
    path.write_text(TOML)
    policies = load_policies(path)
    assert sorted(policies) == ["cheap", "premium"]
    cheap, premium = policies["cheap"], policies["premium"]
    assert cheap.su_hour == usd("0.01")
    assert cheap.certified_factor == Decimal("1.1")
    assert premium.dedicated_discount == Decimal("0.6")
    # premium, small VM: 1 * 0.05 + 0.25 * 0.02 = 0.055; the full node dedicated:
    # (64 * 0.05 + 30 * 0.02) * 0.6 = (3.2 + 0.6) * 0.6 = 2.28
    assert hourly_cost(SMALL, policy_named("premium", policies)).usd_hour == usd("0.055")
    rented = hourly_cost(FULL_NODE, policies["premium"], dedicated=True)
    assert rented.usd_hour == usd("2.28")


def test_load_policies_from_json(tmp_path: Path):
    path = tmp_path / "policies.json"
    # a JSON number is read as an exact Decimal too: 0.0035 stays 0.0035
    data = {"policies": [policy_data(ipv4_hour={"amount": 0.0035, "currency": "USD"})]}
    path.write_text(json.dumps(data))
    policies = load_policies(str(path))
    assert policies["cheap"].ipv4_hour == usd("0.0035")
    # small VM + 1 IPv4: 0.02 + 0.0025 + 0.0035 = 0.026
    assert hourly_cost(SMALL + Resources(ipv4=1), policies["cheap"]).usd_hour == usd("0.026")


def write_policies(tmp_path: Path, *entries: dict[str, object]) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"policies": list(entries)}))
    return path


def test_a_bad_file_names_the_file_and_the_field(tmp_path: Path):
    path = write_policies(
        tmp_path,
        policy_data(name="fine"),
        policy_data(name="tft", su_hour={"amount": "0.5", "currency": "TFT"}),
    )
    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)
    message = str(caught.value)
    assert str(path) in message
    assert "policies[1] (tft).su_hour: prices must be in USD, got TFT" in message


def test_a_bad_file_lists_every_problem(tmp_path: Path):
    broken = policy_data(cu_hour={"amount": "0.123456789", "currency": "USD"}, colour="red")
    del broken["nu_gb"]
    with pytest.raises(PolicyFileError) as caught:
        load_policies(write_policies(tmp_path, broken))
    message = str(caught.value)
    assert "policies[0] (cheap).cu_hour: USD amounts carry at most 7 decimal places" in message
    assert "policies[0] (cheap).nu_gb: Field required" in message
    assert "policies[0] (cheap).colour: Extra inputs are not permitted" in message


def test_a_file_cannot_redefine_a_shipped_policy_or_repeat_a_name(tmp_path: Path):
    path = write_policies(
        tmp_path, policy_data(name="genesis"), policy_data(), policy_data(name="cheap")
    )
    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)
    message = str(caught.value)
    assert "policies[0] (genesis).name: 'genesis' is a shipped policy" in message
    assert "policies[2] (cheap).name: defined twice (also policies[1])" in message


def test_a_file_without_policies_names_the_missing_key(tmp_path: Path):
    path = tmp_path / "empty.toml"
    path.write_text('title = "nothing"\n')
    with pytest.raises(PolicyFileError) as caught:
        load_policies(path)
    assert "policies: Field required" in str(caught.value)
    assert "title: Extra inputs are not permitted" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.toml", "[[policies]\n", "not valid TOML"),
        ("broken.json", "{", "not valid JSON"),
        ("policies.yaml", "policies: []", "expected a .json or .toml file"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=message) as caught:
        load_policies(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_a_missing_file_is_named(tmp_path: Path):
    path = tmp_path / "absent.toml"
    with pytest.raises(PolicyFileError, match="cannot read it") as caught:
        load_policies(path)
    assert str(path) in str(caught.value)
