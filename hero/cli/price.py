"""``hero price``: what a shape of resources costs per hour and per month, at a pricing policy.

Pure arithmetic over :mod:`hero.domain.pricing`; no store, no stack.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import AsJson, console, fail, print_json
from hero.cli.tables import fmt_money, fmt_resources
from hero.domain.pricing import (
    HOURS_PER_MONTH,
    HourlyCost,
    PolicyFileError,
    PricingPolicy,
    UnknownPricingPolicy,
    hourly_cost,
    load_policies,
    policy_named,
)
from schemas import Money, Resources

__all__ = ["price"]


def _count(value: int, option: str) -> int:
    if value < 0:
        fail(f"{option} cannot be negative, got {value}")
    return value


def _gb(value: str, option: str) -> Decimal:
    """A size in GB from the command line, exactly (never through a float)."""
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        fail(escape(f"{option} must be a number of GB, got {value!r}"))
    if not amount.is_finite():
        fail(f"{option} must be a finite number of GB, got {value!r}")
    if amount < 0:
        fail(f"{option} cannot be negative, got {value}")
    return amount


def _policy(name: str, policies_file: Path | None) -> PricingPolicy:
    custom = None
    if policies_file is not None:
        try:
            custom = load_policies(policies_file)
        except PolicyFileError as error:
            fail(escape(f"--policies-file: {error}"))
    try:
        return policy_named(name, custom)
    except UnknownPricingPolicy as error:
        fail(escape(f"--policy: {error}"))


def _plain(value: Decimal) -> str:
    """A decimal as JSON-safe text: no exponent, no trailing zeros (``8.1``, not ``8.1000000``)."""
    return f"{value.normalize():f}"


def _usd(money: Money) -> str:
    return _plain(money.amount)


def _units(value: Decimal) -> str:
    """CU and SU for reading: 7 places at most (1 TB of HDD is 0.8333333 SU)."""
    return _plain(value.quantize(Decimal("0.0000001")))


def _as_json(cost: HourlyCost, resources: Resources, certified: bool, dedicated: bool) -> Any:
    return {
        "policy": cost.policy,
        "resources": {
            "cru": resources.cru,
            "mru_gb": _plain(resources.mru_gb),
            "sru_gb": _plain(resources.sru_gb),
            "hru_gb": _plain(resources.hru_gb),
            "ipv4": resources.ipv4,
        },
        "certified": certified,
        "dedicated": dedicated,
        "cu": _plain(cost.cu),
        "su": _plain(cost.su),
        "breakdown_hour": {
            "compute": _usd(cost.compute),
            "storage": _usd(cost.storage),
            "ipv4": _usd(cost.ipv4),
            "network": _usd(cost.network),
        },
        "list_hour": _usd(cost.list_hour),
        "factors": {
            "certified": _plain(cost.certified_factor),
            "dedicated": _plain(cost.dedicated_factor),
            "discount": _plain(cost.discount_factor),
        },
        "usd_hour": _usd(cost.usd_hour),
        "usd_month": _usd(cost.usd_month),
        "hours_per_month": HOURS_PER_MONTH,
    }


def _table(cost: HourlyCost, resources: Resources) -> Table:
    table = Table("item", "value")
    table.add_row("CU", _units(cost.cu))
    table.add_row("SU", _units(cost.su))
    table.add_row("compute /h", fmt_money(cost.compute))
    table.add_row("storage /h", fmt_money(cost.storage))
    if resources.ipv4:
        table.add_row("IPv4 /h", fmt_money(cost.ipv4))
    table.add_row("list price /h", fmt_money(cost.list_hour))
    if cost.dedicated_factor != 1:
        table.add_row("dedicated", f"x{_plain(cost.dedicated_factor)} on compute and storage")
    if cost.certified_factor != 1:
        table.add_row("certified", f"x{_plain(cost.certified_factor)}")
    table.add_row("[bold]USD per hour[/]", f"[bold]{fmt_money(cost.usd_hour)}[/]")
    table.add_row(
        f"[bold]USD per month[/] ({HOURS_PER_MONTH} h)", f"[bold]{fmt_money(cost.usd_month)}[/]"
    )
    return table


def price(
    cru: Annotated[int, typer.Option("--cru", metavar="N", help="virtual cores")] = 0,
    mru_gb: Annotated[
        str, typer.Option("--mru-gb", metavar="GB", help="memory, GB (1024^3 bytes)")
    ] = "0",
    sru_gb: Annotated[str, typer.Option("--sru-gb", metavar="GB", help="SSD storage, GB")] = "0",
    hru_gb: Annotated[str, typer.Option("--hru-gb", metavar="GB", help="HDD storage, GB")] = "0",
    ipv4: Annotated[int, typer.Option("--ipv4", metavar="N", help="public IPv4 addresses")] = 0,
    policy: Annotated[
        str,
        typer.Option(
            "--policy", metavar="NAME", help="genesis, manual, or a name from --policies-file"
        ),
    ] = "genesis",
    policies_file: Annotated[
        Path | None,
        typer.Option("--policies-file", help="custom pricing policies, .json or .toml"),
    ] = None,
    certified: Annotated[
        bool,
        typer.Option(
            "--certified", help="on certified capacity: x1.25 (the policy's certified factor)"
        ),
    ] = False,
    dedicated: Annotated[
        bool,
        typer.Option(
            "--dedicated",
            help="a whole rented node: CU and SU at 50% (the policy's dedicated discount)",
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """The cost of some resources per hour and per month (720 h), with TFChain's formulas."""
    resources = Resources.from_gb(
        cru=_count(cru, "--cru"),
        mru_gb=_gb(mru_gb, "--mru-gb"),
        sru_gb=_gb(sru_gb, "--sru-gb"),
        hru_gb=_gb(hru_gb, "--hru-gb"),
        ipv4=_count(ipv4, "--ipv4"),
    )
    chosen = _policy(policy, policies_file)
    try:
        cost = hourly_cost(resources, chosen, certified=certified, dedicated=dedicated)
    except ValueError:  # the only way here: a cost beyond what Money holds
        fail("cannot price these resources: the cost would reach 10^18 USD; check the sizes")
    if as_json:
        print_json(_as_json(cost, resources, certified, dedicated))
        return
    console.print(f"{fmt_resources(resources)}, pricing policy {cost.policy}")
    console.print(_table(cost, resources))
