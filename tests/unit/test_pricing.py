"""TFChain resource units and reference prices, worked by hand (DOMAIN.md, cost.rs).

CU = min(max(mru/4, cru/2), max(mru/8, cru), max(mru/2, cru/4))      mru in GB (1024^3 B)
SU = hru/1200 + sru/200                                               disks in GB
price/h = CU * 0.010 + SU * 0.005 + ipv4 * 0.004 USD                  genesis policy 1
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from hero.domain.pricing import (
    GENESIS_CU_HOUR,
    GENESIS_SU_HOUR,
    ask_price,
    cu,
    floor_price,
    hourly_price_at,
    price_per_cu_hour,
    reference_price_hour,
    su,
)
from schemas import FarmerPolicy, Money, Resources
from schemas.resources import GIB


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


# The shapes, by hand:
#
# small VM, 2 cores / 4 GB / 50 GB SSD:
#   CU = min(max(4/4, 2/2), max(4/8, 2), max(4/2, 2/4)) = min(1, 2, 2) = 1
#   SU = 50/200 = 0.25
#   price = 1 * 0.010 + 0.25 * 0.005 = 0.010 + 0.00125 = 0.01125 USD/h
SMALL = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
#
# memory-heavy, 1 core / 16 GB:
#   CU = min(max(16/4, 1/2), max(16/8, 1), max(16/2, 1/4)) = min(4, 2, 8) = 2
#   price = 2 * 0.010 = 0.020 USD/h
MEMORY_HEAVY = Resources.from_gb(cru=1, mru_gb=16)
#
# CPU-heavy, 16 cores / 4 GB:
#   CU = min(max(4/4, 16/2), max(4/8, 16), max(4/2, 16/4)) = min(8, 16, 4) = 4
#   price = 4 * 0.010 = 0.040 USD/h
CPU_HEAVY = Resources.from_gb(cru=16, mru_gb=4)
#
# balanced, 4 cores / 8 GB / 100 GB SSD:
#   CU = min(max(2, 2), max(1, 4), max(4, 1)) = min(2, 4, 4) = 2
#   SU = 100/200 = 0.5
#   price = 2 * 0.010 + 0.5 * 0.005 = 0.020 + 0.0025 = 0.0225 USD/h
BALANCED = Resources.from_gb(cru=4, mru_gb=8, sru_gb=100)
#
# 1 TB of HDD (1000 GB), nothing else:
#   CU = min(max(0, 0), ...) = 0
#   SU = 1000/1200 = 5/6 = 0.8333...
#   price = 5/6 * 0.005 = 0.0041666... -> 0.0041667 USD/h (7 places, half-even)
HDD_1TB = Resources.from_gb(hru_gb=1000)


@pytest.mark.parametrize(
    ("resources", "units"),
    [
        (SMALL, Decimal(1)),
        (MEMORY_HEAVY, Decimal(2)),
        (CPU_HEAVY, Decimal(4)),
        (BALANCED, Decimal(2)),
        (HDD_1TB, Decimal(0)),
        (Resources(), Decimal(0)),
        # 1 core / 3 GB: min(max(0.75, 0.5), max(0.375, 1), max(1.5, 0.25)) = 0.75
        (Resources.from_gb(cru=1, mru_gb=3), Decimal("0.75")),
        # cores alone: 4 cores, no memory: min(max(0, 2), max(0, 4), max(0, 1)) = 1
        (Resources(cru=4), Decimal(1)),
        # memory alone: 8 GB, no core: min(max(2, 0), max(1, 0), max(4, 0)) = 1
        (Resources.from_gb(mru_gb=8), Decimal(1)),
    ],
    ids=["small", "memory_heavy", "cpu_heavy", "balanced", "hdd", "nothing", "3gb", "cores", "mem"],
)
def test_compute_units_follow_tfchain(resources, units):
    assert cu(resources) == units


@pytest.mark.parametrize(
    ("resources", "units"),
    [
        (SMALL, Decimal("0.25")),
        (BALANCED, Decimal("0.5")),
        (MEMORY_HEAVY, Decimal(0)),
        (Resources.from_gb(sru_gb=200), Decimal(1)),
        (Resources.from_gb(hru_gb=1200), Decimal(1)),
        # 1200 GB HDD + 200 GB SSD = 1 + 1
        (Resources.from_gb(hru_gb=1200, sru_gb=200), Decimal(2)),
    ],
    ids=["small", "balanced", "no_disk", "ssd_200", "hdd_1200", "both"],
)
def test_storage_units_follow_tfchain(resources, units):
    assert su(resources) == units


def test_one_tb_of_hdd_is_five_sixths_of_a_storage_unit():
    assert su(HDD_1TB) * 6 == 5
    assert cu(HDD_1TB) == 0


def test_a_gb_is_1024_cubed_bytes():
    assert GIB == 1024**3
    # 200 "decimal" GB = 200e9 bytes = 186.26 GiB: less than one SU
    assert su(Resources(sru=200 * 10**9)) < 1
    assert su(Resources(sru=200 * GIB)) == 1
    # 4 GiB and 2 cores is one CU; 4e9 bytes is a little short of it
    assert cu(Resources(cru=2, mru=4 * GIB)) == 1
    assert cu(Resources(cru=2, mru=4 * 10**9)) == 1  # capped by cru/2 = 1 in the first term
    assert cu(Resources(cru=1, mru=4 * 10**9)) < 1


@pytest.mark.parametrize(
    ("resources", "price"),
    [
        (SMALL, "0.01125"),
        (MEMORY_HEAVY, "0.02"),
        (CPU_HEAVY, "0.04"),
        (BALANCED, "0.0225"),
        (HDD_1TB, "0.0041667"),
        (Resources(), "0"),
        # SMALL with a public IPv4: 0.01125 + 0.004 = 0.01525
        (SMALL + Resources(ipv4=1), "0.01525"),
    ],
    ids=["small", "memory_heavy", "cpu_heavy", "balanced", "hdd", "nothing", "small_ipv4"],
)
def test_reference_price_at_the_genesis_policy(resources, price):
    assert reference_price_hour(resources) == usd(price)


def test_the_genesis_unit_prices():
    # 10 mUSD per CU-hour and 5 mUSD per SU-hour (tfchain chain_spec.rs)
    assert (GENESIS_CU_HOUR.amount, GENESIS_CU_HOUR.currency) == (Decimal("0.010"), "USD")
    assert (GENESIS_SU_HOUR.amount, GENESIS_SU_HOUR.currency) == (Decimal("0.005"), "USD")


def test_reference_prices_carry_seven_places_at_most():
    price = reference_price_hour(HDD_1TB)
    assert price.amount == Decimal("0.0041667")
    assert price.amount.as_tuple().exponent >= -7


def test_reference_price_at_the_manual_unit_prices():
    # manual values: CU 30.56 mUSD/h, SU 19.44 mUSD/h, IPv4 6.94 mUSD/h
    # SMALL + 1 IPv4: 1 * 0.03056 + 0.25 * 0.01944 + 0.00694 = 0.03056 + 0.00486 + 0.00694
    price = reference_price_hour(
        SMALL + Resources(ipv4=1),
        cu_hour=usd("0.03056"),
        su_hour=usd("0.01944"),
        ipv4_hour=usd("0.00694"),
    )
    assert price == usd("0.04236")


def test_reference_price_is_in_the_currency_of_the_cu_price():
    price = reference_price_hour(
        SMALL,
        cu_hour=Money.of("0.5", "TFT"),
        su_hour=Money.of("0.2", "TFT"),
        ipv4_hour=Money.of("0.1", "TFT"),
    )
    # 1 * 0.5 + 0.25 * 0.2 = 0.55 TFT
    assert price == Money.of("0.55", "TFT")


@pytest.mark.parametrize(
    ("price", "resources", "per_cu"),
    [
        # SMALL at the genesis price: (0.01125 - 0.25 * 0.005) / 1 = 0.010
        ("0.01125", SMALL, "0.01"),
        # SMALL at 3 cents: (0.03 - 0.00125) / 1 = 0.02875
        ("0.03", SMALL, "0.02875"),
        # BALANCED at 5 cents: (0.05 - 0.5 * 0.005) / 2 = 0.0475 / 2 = 0.02375
        ("0.05", BALANCED, "0.02375"),
        # CPU_HEAVY (4 CU, no disk) at 6 cents: 0.06 / 4 = 0.015
        ("0.06", CPU_HEAVY, "0.015"),
        # SMALL with an IPv4 at 0.02: (0.02 - 0.00125 - 0.004) / 1 = 0.01475
        ("0.02", SMALL + Resources(ipv4=1), "0.01475"),
        # a price below the storage's own reference: floored at zero
        ("0.001", SMALL, "0"),
        # MEMORY_HEAVY at 1 cent: 0.01 / 2 = 0.005
        ("0.01", MEMORY_HEAVY, "0.005"),
        # 3 CU shape (12 GB, 6 cores: min(3, 6, 6)) at 1 cent: 0.01 / 3 = 0.0033333...
        ("0.01", Resources.from_gb(cru=6, mru_gb=12), "0.0033333"),
    ],
    ids=[
        "genesis",
        "small_3c",
        "balanced",
        "cpu_heavy",
        "with_ipv4",
        "floored",
        "memory_heavy",
        "rounded",
    ],
)
def test_price_per_cu_hour_takes_storage_and_ips_out_first(price, resources, per_cu):
    assert price_per_cu_hour(usd(price), resources) == usd(per_cu)


def test_price_per_cu_hour_of_storage_only_is_the_price_itself():
    # no compute to divide by: the price is returned as it is
    assert price_per_cu_hour(usd("0.0041667"), HDD_1TB) == usd("0.0041667")


def test_hourly_price_at_is_the_inverse_of_price_per_cu_hour():
    # BALANCED at 0.02375/CU-hour: 2 * 0.02375 + 0.5 * 0.005 = 0.0475 + 0.0025 = 0.05
    assert hourly_price_at(usd("0.02375"), BALANCED) == usd("0.05")
    for shape in (SMALL, MEMORY_HEAVY, CPU_HEAVY, BALANCED):
        price = usd("0.0375")
        assert hourly_price_at(price_per_cu_hour(price, shape), shape) == price


@pytest.mark.parametrize(
    "resources", [SMALL, MEMORY_HEAVY, CPU_HEAVY, BALANCED, HDD_1TB, SMALL + Resources(ipv4=2)]
)
def test_hourly_price_at_the_genesis_cu_price_is_the_reference_price(resources):
    assert hourly_price_at(GENESIS_CU_HOUR, resources) == reference_price_hour(resources)


def test_more_of_every_resource_never_costs_less():
    shapes = [Resources(), SMALL, BALANCED, BALANCED + HDD_1TB, BALANCED.times(2)]
    prices = [reference_price_hour(s).amount for s in shapes]
    assert prices == sorted(prices)
    assert reference_price_hour(BALANCED.times(2)) == usd("0.045")  # twice 0.0225


def test_ask_and_floor_depend_on_the_policys_prices_not_on_how_they_are_written():
    """They are cached by the policy's price terms: equal terms written differently (1.5 and
    1.50) price the same, and a different floor is not served another policy's floor."""
    shape = Resources(cru=2, mru=4 * GIB, sru=50 * GIB)
    assert ask_price(FarmerPolicy(markup=Decimal("1.5")), shape) == ask_price(
        FarmerPolicy(markup=Decimal("1.50")), shape
    )
    priced = {"price_cu_hour": Money.of("0.04", "USD"), "price_su_hour": Money.of("0.02", "USD")}
    low = FarmerPolicy(**priced, floor_cu_hour=Money.of("0.01", "USD"))
    high = FarmerPolicy(**priced, floor_cu_hour=Money.of("0.03", "USD"))
    assert floor_price(low, shape) < floor_price(high, shape) <= ask_price(high, shape)
    assert ask_price(low, shape) == ask_price(high, shape)
