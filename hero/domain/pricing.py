"""Resource units and reference prices, with TFChain's formulas (DOMAIN.md; threefoldtech/tfchain,
``pallets/pallet-smart-contract/src/cost.rs``)."""

from __future__ import annotations

from decimal import Decimal

from schemas import FarmerPolicy, Money, Resources

__all__ = [
    "GENESIS_CU_HOUR",
    "GENESIS_SU_HOUR",
    "ask_price",
    "cu",
    "floor_price",
    "hourly_price_at",
    "price_per_cu_hour",
    "reference_price_hour",
    "su",
]

#: genesis pricing policy 1 (tfchain chain_spec.rs): 10 mUSD per CU-hour, 5 mUSD per SU-hour.
GENESIS_CU_HOUR = Money.of("0.010", "USD")
GENESIS_SU_HOUR = Money.of("0.005", "USD")
GENESIS_IPV4_HOUR = Money.of("0.004", "USD")


def cu(resources: Resources) -> Decimal:
    """CU = min(max(mru/4, cru/2), max(mru/8, cru), max(mru/2, cru/4)), mru in GB."""
    mru, cru = resources.mru_gb, Decimal(resources.cru)
    return min(max(mru / 4, cru / 2), max(mru / 8, cru), max(mru / 2, cru / 4))


def su(resources: Resources) -> Decimal:
    """SU = hru/1200 + sru/200, in GB."""
    return resources.hru_gb / 1200 + resources.sru_gb / 200


def reference_price_hour(
    resources: Resources,
    cu_hour: Money = GENESIS_CU_HOUR,
    su_hour: Money = GENESIS_SU_HOUR,
    ipv4_hour: Money = GENESIS_IPV4_HOUR,
) -> Money:
    """The hourly price of ``resources`` at the given unit prices (USD)."""
    amount = (
        cu(resources) * cu_hour.amount
        + su(resources) * su_hour.amount
        + resources.ipv4 * ipv4_hour.amount
    )
    return Money.rounded(amount, cu_hour.currency)


def price_per_cu_hour(price_hour: Money, resources: Resources) -> Money:
    """A price normalised to USD per CU-hour: storage and IPs are priced out at the reference
    rates first, so offers with different shapes compare on compute alone."""
    units = cu(resources)
    if units == 0:
        return price_hour
    extras = su(resources) * GENESIS_SU_HOUR.amount + resources.ipv4 * GENESIS_IPV4_HOUR.amount
    return Money.rounded(max(price_hour.amount - extras, Decimal(0)) / units, price_hour.currency)


def hourly_price_at(per_cu_hour: Money, resources: Resources) -> Money:
    """The inverse of :func:`price_per_cu_hour`: the hourly price of ``resources`` when compute
    costs ``per_cu_hour`` and storage and IPs cost the reference rates."""
    extras = su(resources) * GENESIS_SU_HOUR.amount + resources.ipv4 * GENESIS_IPV4_HOUR.amount
    return Money.rounded(cu(resources) * per_cu_hour.amount + extras, per_cu_hour.currency)


def ask_price(policy: FarmerPolicy, resources: Resources) -> Money:
    """The farmer's asking price per hour for ``resources``."""
    if policy.markup is not None:
        return reference_price_hour(resources).times(policy.markup)
    amount = Decimal(0)
    if policy.price_cu_hour is not None:
        amount += cu(resources) * policy.price_cu_hour.amount
    if policy.price_su_hour is not None:
        amount += su(resources) * policy.price_su_hour.amount
    return Money.rounded(amount, "USD")


def floor_price(policy: FarmerPolicy, resources: Resources) -> Money:
    """The lowest hourly price the farmer takes: the floor per CU-hour, or the ask."""
    ask = ask_price(policy, resources)
    if policy.floor_cu_hour is None:
        return ask
    storage = ask.amount - cu(resources) * price_per_cu_hour(ask, resources).amount
    floor = cu(resources) * policy.floor_cu_hour.amount + max(storage, Decimal(0))
    return Money.rounded(min(floor, ask.amount), "USD")
