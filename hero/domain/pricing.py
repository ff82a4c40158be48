"""Resource units, pricing policies and hourly costs, with TFChain's formulas (DOMAIN.md
"Pricing and billing"; threefoldtech/tfchain, ``pallets/pallet-smart-contract/src/cost.rs``).

Pure: no I/O except :func:`load_policies`, which reads the one file it is given.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas import Currency, CurrencyMismatch, FarmerPolicy, Money, Resources
from schemas.exact import refuse_float

__all__ = [
    "DISCOUNT_LEVELS",
    "GENESIS",
    "GENESIS_CU_HOUR",
    "GENESIS_IPV4_HOUR",
    "GENESIS_NU_GB",
    "GENESIS_SU_HOUR",
    "GENESIS_UNIQUE_NAME_HOUR",
    "HOURS_PER_MONTH",
    "MANUAL",
    "SHIPPED_POLICIES",
    "HourlyCost",
    "PolicyFileError",
    "PricingPolicy",
    "UnknownPricingPolicy",
    "ask_price",
    "cu",
    "floor_price",
    "hourly_cost",
    "hourly_price_at",
    "load_policies",
    "parse_policies",
    "policy_named",
    "price_per_cu_hour",
    "reference_price_hour",
    "staking_discount",
    "su",
]

#: TFChain infers a month as 24 * 30 hours (cost.rs, ``calculate_discount``).
HOURS_PER_MONTH = 720

_PRICE_FIELDS = ("cu_hour", "su_hour", "nu_gb", "ipv4_hour", "unique_name_hour")


class PricingPolicy(BaseModel):
    """Unit prices in USD and the factors for certified capacity and dedicated nodes.

    ``nu_gb`` is per GB of network traffic; every other price is per hour.
    ``dedicated_discount`` is the fraction of the full price paid for a rented node.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^\S+$", description="no spaces: a CLI argument")
    cu_hour: Money = Field(description="USD per CU-hour")
    su_hour: Money = Field(description="USD per SU-hour")
    nu_gb: Money = Field(description="USD per GB of network traffic")
    ipv4_hour: Money = Field(description="USD per public IPv4-hour")
    unique_name_hour: Money = Field(description="USD per unique-name-hour")
    certified_factor: Decimal = Field(default=Decimal("1.25"), gt=0)
    dedicated_discount: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)

    @field_validator(*_PRICE_FIELDS)
    @classmethod
    def _usd_and_not_negative(cls, price: Money) -> Money:
        # TFChain keeps every unit price in USD; a TFT price would drift with the TFT rate.
        if price.currency != Currency.USD:
            raise ValueError(f"prices must be in USD, got {price.currency.value}")
        if price.is_negative:
            raise ValueError(f"prices cannot be negative, got {price.amount}")
        return price

    _no_floats = field_validator("certified_factor", "dedicated_discount", mode="before")(
        refuse_float
    )


def _usd(amount: str) -> Money:
    return Money.of(amount, "USD")


#: Genesis pricing policy 1 (tfchain chain_spec.rs), DOMAIN.md's table in mUSD/h -> USD.
GENESIS = PricingPolicy(
    name="genesis",
    cu_hour=_usd("0.010"),
    su_hour=_usd("0.005"),
    nu_gb=_usd("0.0015"),
    ipv4_hour=_usd("0.004"),
    unique_name_hour=_usd("0.00025"),
)

#: The manual's (info_grid) values: 22, 14 and 5 USD a month for a CU, an SU and an IPv4.
MANUAL = PricingPolicy(
    name="manual",
    cu_hour=_usd("0.03056"),
    su_hour=_usd("0.01944"),
    nu_gb=_usd("0.05"),
    ipv4_hour=_usd("0.00694"),
    unique_name_hour=_usd("0.00139"),
)

SHIPPED_POLICIES: Mapping[str, PricingPolicy] = {GENESIS.name: GENESIS, MANUAL.name: MANUAL}

#: genesis pricing policy 1: 10 mUSD per CU-hour, 5 mUSD per SU-hour, 4 mUSD per IPv4-hour.
GENESIS_CU_HOUR = GENESIS.cu_hour
GENESIS_SU_HOUR = GENESIS.su_hour
GENESIS_IPV4_HOUR = GENESIS.ipv4_hour
GENESIS_NU_GB = GENESIS.nu_gb
GENESIS_UNIQUE_NAME_HOUR = GENESIS.unique_name_hour


def cu(resources: Resources) -> Decimal:
    """CU = min(max(mru/4, cru/2), max(mru/8, cru), max(mru/2, cru/4)), mru in GB."""
    return _cu(resources.cru, resources.mru)


def su(resources: Resources) -> Decimal:
    """SU = hru/1200 + sru/200, in GB."""
    return _su(resources.hru, resources.sru)


# A market prices the same few shapes (a workload's replicas, a node's capacity) again and
# again: every farmer agent for every RFQ, every bill, every hour's figures.
@lru_cache(maxsize=1 << 14)
def _cu(cru: int, mru: int) -> Decimal:
    gb, cores = Resources(mru=mru).mru_gb, Decimal(cru)
    return min(max(gb / 4, cores / 2), max(gb / 8, cores), max(gb / 2, cores / 4))


@lru_cache(maxsize=1 << 14)
def _su(hru: int, sru: int) -> Decimal:
    shape = Resources(hru=hru, sru=sru)
    return shape.hru_gb / 1200 + shape.sru_gb / 200


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
    key = (per_cu_hour.amount, per_cu_hour.currency, *_shape(resources))
    found = _PRICED_AT.get(key)
    if found is None:
        found = _remember(_PRICED_AT, key, _hourly_price_at(per_cu_hour, resources))
    return found


_PRICED_AT: dict[tuple[object, ...], Money] = {}


def _hourly_price_at(per_cu_hour: Money, resources: Resources) -> Money:
    extras = su(resources) * GENESIS_SU_HOUR.amount + resources.ipv4 * GENESIS_IPV4_HOUR.amount
    return Money.rounded(cu(resources) * per_cu_hour.amount + extras, per_cu_hour.currency)


def ask_price(policy: FarmerPolicy, resources: Resources) -> Money:
    """The farmer's asking price per hour for ``resources``."""
    return _ask_and_floor(policy, resources)[0]


def floor_price(policy: FarmerPolicy, resources: Resources) -> Money:
    """The lowest hourly price the farmer takes: the floor per CU-hour, or the ask."""
    return _ask_and_floor(policy, resources)[1]


_Amount = Decimal | None
_V = TypeVar("_V")
_ASKED: dict[tuple[object, ...], tuple[Money, Money]] = {}
_ASKED_MAX = 1 << 14


def _ask_and_floor(policy: FarmerPolicy, resources: Resources) -> tuple[Money, Money]:
    """(ask, floor), cached by what they depend on: the policy's markup, CU and SU prices and
    floor (USD amounts: the policy's checks hold them to USD, and a result is rounded, so 1.5
    and 1.50 agree) and the shape's numbers (a tuple hashes and compares faster than the
    model)."""
    cu_hour, su_hour, floor = policy.price_cu_hour, policy.price_su_hour, policy.floor_cu_hour
    terms = (
        policy.markup,
        None if cu_hour is None else cu_hour.amount,
        None if su_hour is None else su_hour.amount,
        None if floor is None else floor.amount,
    )
    key = (*terms, *_shape(resources))
    found = _ASKED.get(key)
    if found is None:
        found = _remember(_ASKED, key, _asked(*terms, resources))
    return found


def _shape(resources: Resources) -> tuple[int, ...]:
    """A shape's numbers: a tuple hashes and compares faster than the model."""
    return (resources.cru, resources.mru, resources.sru, resources.hru, resources.ipv4)


def _remember(cache: dict[tuple[object, ...], _V], key: tuple[object, ...], value: _V) -> _V:
    """Keep ``value`` under ``key``; a full cache starts again (the prices asked again are
    few, and a bound keeps a long run's memory flat)."""
    if len(cache) >= _ASKED_MAX:
        cache.clear()
    cache[key] = value
    return value


def _asked(
    markup: _Amount, cu_hour: _Amount, su_hour: _Amount, floor_cu_hour: _Amount, shape: Resources
) -> tuple[Money, Money]:
    """(ask, floor) per hour of ``shape`` at these terms."""
    if markup is not None:
        ask = reference_price_hour(shape).times(markup)
    else:
        amount = Decimal(0)
        if cu_hour is not None:
            amount += cu(shape) * cu_hour
        if su_hour is not None:
            amount += su(shape) * su_hour
        ask = Money.rounded(amount, "USD")
    if floor_cu_hour is None:
        return ask, ask
    storage = ask.amount - cu(shape) * price_per_cu_hour(ask, shape).amount
    floor = cu(shape) * floor_cu_hour + max(storage, Decimal(0))
    return ask, Money.rounded(min(floor, ask.amount), "USD")


# -- pricing policies by name, and from files ------------------------------------------------------


class UnknownPricingPolicy(ValueError):
    """A policy name that is neither shipped nor among the custom policies given."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"unknown pricing policy {name!r}; known: {', '.join(known)}")


class PolicyFileError(ValueError):
    """A policy file that cannot be read or does not validate; the message names the file and,
    for each problem, the field (``policies[0] (cheap).cu_hour``)."""


def policy_named(name: str, custom: Mapping[str, PricingPolicy] | None = None) -> PricingPolicy:
    """The shipped policy ``genesis`` or ``manual``, or one of ``custom`` (by its key).

    Shipped names win over custom ones; :func:`load_policies` refuses them anyway.
    """
    known = {**(custom or {}), **SHIPPED_POLICIES}
    try:
        return known[name]
    except KeyError:
        raise UnknownPricingPolicy(name, sorted(known)) from None


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policies: list[PricingPolicy]


def _where(location: tuple[int | str, ...], data: Any) -> str:
    """``('policies', 0, 'cu_hour')`` as ``policies[0] (cheap).cu_hour``: the entry's name,
    when it has one, helps find it in a long file."""
    text = ""
    for position, part in enumerate(location):
        if isinstance(part, int):
            text += f"[{part}]"
            name = _entry_name(data, part) if position == 1 else None
            text += f" ({name})" if name else ""
        else:
            text += f".{part}" if text else part
    return text or "(whole file)"


def _entry_name(data: Any, index: int) -> str | None:
    try:
        name = data["policies"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _message(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def _name_problems(policies: list[PricingPolicy]) -> list[str]:
    """Shipped names cannot be redefined, and each name appears once."""
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for index, policy in enumerate(policies):
        where = f"policies[{index}] ({policy.name}).name"
        if policy.name in SHIPPED_POLICIES:
            problems.append(f"{where}: {policy.name!r} is a shipped policy; choose another name")
        elif policy.name in first_seen:
            problems.append(f"{where}: defined twice (also policies[{first_seen[policy.name]}])")
        else:
            first_seen[policy.name] = index
    return problems


def parse_policies(data: Any, source: str) -> dict[str, PricingPolicy]:
    """Custom policies from a parsed document ``{"policies": [{...}, ...]}``, by name.

    Raises :class:`PolicyFileError` naming ``source`` and every field at fault.
    """
    try:
        parsed = _PolicyFile.model_validate(data)
    except ValidationError as error:
        problems = [f"{_where(e['loc'], data)}: {_message(e)}" for e in error.errors()]
        raise PolicyFileError(_problems_text(source, problems)) from None
    if problems := _name_problems(parsed.policies):
        raise PolicyFileError(_problems_text(source, problems))
    return {policy.name: policy for policy in parsed.policies}


def _problems_text(source: str, problems: list[str]) -> str:
    return f"invalid pricing policies in {source}:\n" + "\n".join(f"  - {p}" for p in problems)


def load_policies(path: Path | str) -> dict[str, PricingPolicy]:
    """Custom policies from a ``.json`` or ``.toml`` file, by name.

    Numbers written bare (``amount = 0.02``) are read as exact Decimals, never floats.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise PolicyFileError(f"{path}: expected a .json or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PolicyFileError(f"{path}: cannot read it: {reason}") from None
    try:
        if suffix == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            data = tomllib.loads(text, parse_float=Decimal)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyFileError(f"{path}: not valid {suffix[1:].upper()}: {error}") from None
    return parse_policies(data, str(path))


# -- staking discount ------------------------------------------------------------------------------

#: (months of cost the balance covers, factor on the price), highest first: tfchain ADR
#: ``0008-discount-levels-changed.md``.
DISCOUNT_LEVELS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(18), Decimal("0.4")),
    (Decimal(6), Decimal("0.6")),
    (Decimal(3), Decimal("0.7")),
    (Decimal("1.5"), Decimal("0.8")),
)


def staking_discount(balance_tft: Money, monthly_cost_tft: Money) -> Decimal:
    """The factor on the price for a balance covering ``balance / monthly cost`` months:
    1, or 0.8 from 1.5 months, 0.7 from 3, 0.6 from 6, 0.4 from 18. A zero cost gives 1.

    Both amounts in one currency (TFT on TFChain); the levels are compared by multiplying the
    cost, not dividing the balance, so a boundary like exactly 1.5 months is met exactly.
    """
    if balance_tft.currency != monthly_cost_tft.currency:
        raise CurrencyMismatch(
            f"balance in {balance_tft.currency}, monthly cost in {monthly_cost_tft.currency}"
        )
    if balance_tft.is_negative or monthly_cost_tft.is_negative:
        raise ValueError("balance and monthly cost cannot be negative")
    if monthly_cost_tft.is_zero:
        return Decimal(1)
    for months, factor in DISCOUNT_LEVELS:
        if balance_tft.amount >= months * monthly_cost_tft.amount:
            return factor
    return Decimal(1)


# -- hourly cost -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourlyCost:
    """What ``resources`` cost, with the units, the parts and the factors applied.

    ``compute``, ``storage``, ``ipv4`` and ``network`` are the parts at the policy's list price,
    before any factor, and ``list_hour`` their sum; each is rounded on its own to 7 places.
    A factor not applied is 1. ``usd_hour`` and ``usd_month`` are each rounded once from the
    exact amount, so ``usd_month`` is 720 hours of the unrounded hourly cost.
    """

    policy: str
    cu: Decimal
    su: Decimal
    compute: Money
    storage: Money
    ipv4: Money
    network: Money
    list_hour: Money
    certified_factor: Decimal
    dedicated_factor: Decimal
    discount_factor: Decimal
    usd_hour: Money
    usd_month: Money


def _decimal(value: Decimal | int, what: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{what} must be a Decimal or an int, not a float")
    return Decimal(value)


def hourly_cost(
    resources: Resources,
    policy: PricingPolicy = GENESIS,
    *,
    certified: bool = False,
    dedicated: bool = False,
    discount: Decimal = Decimal(1),
    nu_gb: Decimal = Decimal(0),
) -> HourlyCost:
    """The cost per hour (and per 720-hour month) of ``resources`` at ``policy``.

    ``nu_gb`` is the network traffic in GB in that hour; ``discount`` a staking factor from
    :func:`staking_discount`. The amount, exact until the single final rounding (7 places,
    half-even), is built in this order::

        compute = CU * cu_hour          storage = SU * su_hour
        ipv4 = count * ipv4_hour        network = nu_gb * nu_gb price
        1. dedicated:  (compute + storage) * dedicated_discount   -- resources only
        2. sum:        + ipv4 + network
        3. certified:  * certified_factor                         -- the whole amount
        4. staking:    * discount                                 -- the whole amount

    The dedicated discount leaves IPv4 and traffic at full price because TFChain does so: a
    rent contract bills the node's CU and SU at ``discount_for_dedication_nodes`` percent, and
    IPs and traffic stay on the node contracts (cost.rs). Products commute, so only which
    parts a factor covers matters, not the order; nothing is rounded before the end.
    """
    discount, traffic = _decimal(discount, "discount"), _decimal(nu_gb, "nu_gb")
    if not 0 < discount <= 1:
        raise ValueError(f"discount must be above 0 and at most 1, got {discount}")
    if traffic < 0:
        raise ValueError(f"nu_gb cannot be negative, got {traffic}")
    units_cu, units_su = cu(resources), su(resources)
    compute = units_cu * policy.cu_hour.amount
    storage = units_su * policy.su_hour.amount
    ipv4 = resources.ipv4 * policy.ipv4_hour.amount
    network = traffic * policy.nu_gb.amount
    certified_factor = policy.certified_factor if certified else Decimal(1)
    dedicated_factor = policy.dedicated_discount if dedicated else Decimal(1)
    exact = ((compute + storage) * dedicated_factor + ipv4 + network) * certified_factor * discount
    return HourlyCost(
        policy=policy.name,
        cu=units_cu,
        su=units_su,
        compute=Money.rounded(compute, Currency.USD),
        storage=Money.rounded(storage, Currency.USD),
        ipv4=Money.rounded(ipv4, Currency.USD),
        network=Money.rounded(network, Currency.USD),
        list_hour=Money.rounded(compute + storage + ipv4 + network, Currency.USD),
        certified_factor=certified_factor,
        dedicated_factor=dedicated_factor,
        discount_factor=discount,
        usd_hour=Money.rounded(exact, Currency.USD),
        usd_month=Money.rounded(exact * HOURS_PER_MONTH, Currency.USD),
    )
