"""``report.json`` of a market twin run: the hourly figures the engine kept, and what the event
log says happened (contracts, declines, scaling, SLA, bills, conversions), folded once at the
end. Decimals are strings; nothing depends on the wall clock or on random ids, so the same
scenario and seed give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

from hero.domain.pricing import cu, price_per_cu_hour
from hero.payments.ledger import ledger_report
from hero.simulate.engine import HourFigures, Twin
from schemas import (
    ContractCancelled,
    ContractCreated,
    ContractSuspended,
    FiatConverted,
    Grid,
    RegisterNode,
    ReplicaMigrated,
    ScaleDecided,
    SlaOutcomeRecorded,
    TransferKind,
    TransferPosted,
    UsageBilled,
)

__all__ = ["REPORT_VERSION", "build_report", "dump_report", "report_schema"]

REPORT_VERSION = 1
DAYS_PER_MONTH = 30
_CENT = Decimal("0.01")
_SHARE = Decimal("0.0001")


def _s(value: Decimal) -> str:
    """A decimal as plain text, ``0`` rather than ``0E-7``."""
    return f"{value.normalize():f}" if value else "0"


def _usd(value: Decimal) -> str:
    return _s(value.quantize(_CENT, ROUND_HALF_EVEN))


def _share(part: Decimal, whole: Decimal) -> str:
    return _s((part / whole).quantize(_SHARE, ROUND_HALF_EVEN)) if whole else "0"


class _Log:
    """What the event log says, folded in one pass."""

    def __init__(self, twin: Twin):
        self.twin = twin
        self.start = twin.scenario.start
        self.created: list[ContractCreated] = []
        self.ended: Counter[str] = Counter()
        self.suspended = 0
        self.decisions: Counter[str] = Counter()
        self.migrations: Counter[str] = Counter()
        self.sla: list[SlaOutcomeRecorded] = []
        self.bills: list[UsageBilled] = []
        self.converted: list[FiatConverted] = []
        self.refunds: dict[str, Decimal] = {}
        """SLA penalty refunds on the ledger, by transfer (each is posted as two legs)."""
        self.unreadable = twin.unreadable
        for event in twin.logged:  # what the twin's report kept as it folded the log
            self._apply(event)

    def _apply(self, event: object) -> None:
        if isinstance(event, ContractCreated):
            self.created.append(event)
        elif isinstance(event, ContractCancelled):
            self.ended[event.reason] += 1
        elif isinstance(event, ContractSuspended):
            self.suspended += 1
        elif isinstance(event, ScaleDecided):
            self.decisions[event.reason] += 1
        elif isinstance(event, ReplicaMigrated):
            self.migrations[event.reason] += 1
        elif isinstance(event, SlaOutcomeRecorded):
            self.sla.append(event)
        elif isinstance(event, UsageBilled):
            self.bills.append(event)
        elif isinstance(event, FiatConverted):
            self.converted.append(event)
        elif isinstance(event, TransferPosted) and event.kind == TransferKind.SLA_PENALTY:
            self.refunds[event.transfer_id] = event.amount.amount

    def day_of(self, moment: Any) -> int:
        return int((moment - self.start).total_seconds() // 86400)


def _utilization(hours: list[HourFigures]) -> list[dict[str, Any]]:
    return [
        {
            "hour": h.hour,
            "live_contracts": h.live_contracts,
            "nodes_down": h.nodes_down,
            "committed_cu_share": {
                grid.value: _share(h.committed_cu[grid], h.total_cu[grid]) for grid in Grid
            },
        }
        for h in hours
    ]


def _prices(log: _Log, days: int) -> list[dict[str, Any]]:
    by_day: dict[int, list[Decimal]] = defaultdict(list)
    for c in log.created:
        if cu(c.resources) > 0:
            by_day[log.day_of(c.starts_at)].append(
                price_per_cu_hour(c.price_hour, c.resources).amount
            )
    rows = []
    for day in range(days):
        prices = sorted(by_day.get(day, []))
        rows.append(
            {
                "day": day,
                "tft_per_usd": _s(log.twin.rates[day]),
                "contracts": len(prices),
                "mean_usd_per_cu_hour": _s(
                    (sum(prices, Decimal(0)) / len(prices)).quantize(Decimal("0.000001"))
                )
                if prices
                else None,
                "min_usd_per_cu_hour": _s(prices[0]) if prices else None,
                "max_usd_per_cu_hour": _s(prices[-1]) if prices else None,
            }
        )
    return rows


def _declines(twin: Twin) -> dict[str, int]:
    reasons: Counter[str] = Counter()
    for decline in twin.report.declines:
        for reason in decline.reasons:
            reasons[reason.value] += 1
    return dict(sorted(reasons.items()))


def _farmers(log: _Log, twin: Twin, days: int) -> dict[str, Any]:
    nodes = Counter(c.farm_id for c in twin.fleet if isinstance(c, RegisterNode))
    usd: dict[str, dict[int, Decimal]] = {farm: defaultdict(Decimal) for farm in nodes}
    tft: dict[str, Decimal] = dict.fromkeys(nodes, Decimal(0))
    for bill in log.bills:
        month = log.day_of(bill.hour) // DAYS_PER_MONTH
        # The farmer's share of the bill's USD: the bill is paid in TFT at one rate.
        usd[bill.farm_id][month] += bill.usd.amount * bill.farmer_share.amount / bill.amount.amount
        tft[bill.farm_id] += bill.farmer_share.amount
    months = max(1, -(-days // DAYS_PER_MONTH))
    reference = twin.scenario.reference_usd_per_node_month * Decimal(days) / DAYS_PER_MONTH
    earned = {farm: sum(usd[farm].values(), Decimal(0)) for farm in nodes}
    refs = {farm: reference * nodes[farm] for farm in nodes}
    farms = [
        {
            "farm_id": farm,
            "nodes": nodes[farm],
            "monthly_usd": [_usd(usd[farm].get(m, Decimal(0))) for m in range(months)],
            "total_usd": _usd(earned[farm]),
            "total_tft": _s(tft[farm]),
            "reference_usd": _usd(refs[farm]),
            "vs_reference": _share(earned[farm], refs[farm]),
        }
        for farm in sorted(nodes)
    ]
    ranked = sorted(nodes, key=lambda farm: (-earned[farm], farm))
    earned_all = sum(earned.values(), Decimal(0))
    ref_all = reference * sum(nodes.values())
    return {
        "farms": farms,
        "top": ranked[:5],
        "bottom": ranked[-5:],
        "distribution_usd": _distribution(sorted(earned.values())),
        "earning_farms": sum(1 for value in earned.values() if value > 0),
        "proof_of_capacity": {
            "reference_usd_per_node_month": _s(twin.scenario.reference_usd_per_node_month),
            "reference_usd": _usd(ref_all),
            "earned_usd": _usd(earned_all),
            "ratio": _share(earned_all, ref_all),
            "farms_above_reference": sum(1 for farm in nodes if earned[farm] >= refs[farm]),
        },
    }


def _distribution(values: list[Decimal]) -> dict[str, str]:
    """Min, quartiles, max of sorted ``values`` (nearest rank)."""

    def rank(q: int) -> str:
        return _usd(values[min(len(values) - 1, (len(values) - 1) * q // 4)]) if values else "0"

    return {"min": rank(0), "p25": rank(1), "median": rank(2), "p75": rank(3), "max": rank(4)}


def _money(log: _Log, twin: Twin, days: int) -> dict[str, Any]:
    billed = sum((b.amount.amount for b in log.bills), Decimal(0))
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for bill in log.bills:
        spend[bill.offtaker_id] += bill.usd.amount
    offtakers = [
        {
            "offtaker_id": o.offtaker_id,
            "spent_usd": _usd(spend[o.offtaker_id]),
            "budget_usd": _usd(o.mandate.budget_month.amount * Decimal(days) / DAYS_PER_MONTH),
            "budget_used": _share(
                spend[o.offtaker_id], o.mandate.budget_month.amount * Decimal(days) / DAYS_PER_MONTH
            ),
        }
        for o in sorted(twin.scenario.offtakers, key=lambda o: o.offtaker_id)
    ]
    book = ledger_report(twin.report.state)  # the twin's model folded every leg already
    totals = {currency.value: _s(total) for currency, total in sorted(book.ledger.totals().items())}
    return {
        "bills": len(log.bills),
        "billed_tft": _s(billed),
        "billed_usd": _usd(sum((b.usd.amount for b in log.bills), Decimal(0))),
        "farmers_tft": _s(sum((b.farmer_share.amount for b in log.bills), Decimal(0))),
        "pool_tft": _s(sum((b.pool_share.amount for b in log.bills), Decimal(0))),
        "threefold_tft": _s(sum((b.threefold_share.amount for b in log.bills), Decimal(0))),
        "split_pct": {
            "farmer": _s(twin.scenario.split.farmer),
            "pool": _s(twin.scenario.split.pool),
            "threefold": _s(twin.scenario.split.threefold),
        },
        "offtakers": offtakers,
        "treasury": {
            "conversions": len(log.converted),
            "fiat_usd": _usd(sum((c.fiat.amount for c in log.converted), Decimal(0))),
            "tft_bought": _s(sum((c.tft.amount for c in log.converted), Decimal(0))),
        },
        "ledger": {
            "totals": totals,
            "balanced": not book.unbalanced and all(v == "0" for v in totals.values()),
        },
    }


def _sla(log: _Log) -> dict[str, Any]:
    """Penalties are exact (a quarter hour's refund of a cent-an-hour contract is well under
    a cent), and the refunds are what the ledger paid, in TFT."""
    breaches = [s for s in log.sla if not s.met]
    return {
        "outcomes": len(log.sla),
        "breaches": len(breaches),
        "hours_down": _s(sum((s.hours_down for s in log.sla), Decimal(0))),
        "penalties_usd": _s(sum((s.penalty.amount for s in breaches), Decimal(0))),
        "refunds": len(log.refunds),
        "refunded_tft": _s(sum(log.refunds.values(), Decimal(0))),
    }


def build_report(twin: Twin, days: int, seed: int) -> dict[str, Any]:
    twin.load()
    log = _Log(twin)
    over = sorted({node for h in twin.hours for node in h.overcommitted})
    return {
        "version": REPORT_VERSION,
        "scenario": twin.scenario.name,
        "seed": seed,
        "days": days,
        "start": twin.scenario.start.isoformat(),
        "utilization": _utilization(twin.hours),
        "prices": _prices(log, days),
        "contracts": {
            "created": len(log.created),
            "live_at_end": len(twin.report.contracts),
            "ended_by_reason": dict(sorted(log.ended.items())),
            "suspended": log.suspended,
            "declines_by_reason": _declines(twin),
            "approvals": twin.approvals,
        },
        "scaling": {
            "decisions_by_reason": dict(sorted(log.decisions.items())),
            "migrations_by_reason": dict(sorted(log.migrations.items())),
            "node_failures": [{"hour": h, "node_id": n} for h, n in twin.failures],
        },
        "sla": _sla(log),
        "farmers": _farmers(log, twin, days),
        "money": _money(log, twin, days),
        "checks": {
            "overcommitted_nodes": over,
            "unreadable_events": log.unreadable,
        },
    }


def dump_report(report: dict[str, Any]) -> bytes:
    return (json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def report_schema() -> dict[str, Any]:
    """The JSON Schema ``report.json`` follows (shipped with the package)."""
    text = resources.files("hero.simulate").joinpath("report.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
