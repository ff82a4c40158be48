"""Settling the market: step the agents, approve as the farmers of approve-mode farms, until
every replica of the story has its contract and none of its negotiations is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hero.cli.market import load_report
from hero.demo.agents import Agents
from hero.demo.scenario import Scenario
from hero.domain.clock import SystemClock
from hero.market.service import CommandRejected, MarketService
from hero.market.views import MarketReport, NegotiationRow, OfferRow
from hero.store import EventStore
from schemas import ApproveOffer

__all__ = ["POLL_S", "Outcome", "approve_pending", "our_negotiations", "settle", "settled"]

POLL_S = 0.1


@dataclass
class Outcome:
    report: MarketReport
    seconds: float
    settled: bool
    approvals: list[OfferRow] = field(default_factory=list)


def our_negotiations(report: MarketReport, story: Scenario) -> list[NegotiationRow]:
    return [n for n in report.negotiations if n.offtaker_id in story.offtakers]


def settled(report: MarketReport, story: Scenario) -> bool:
    """Every replica has its contract and no negotiation of this run is open."""
    ours = our_negotiations(report, story)
    contracts = [c for c in report.contracts if c.offtaker_id in story.offtakers]
    return bool(ours) and all(n.closed for n in ours) and len(contracts) >= story.replicas


def approve_pending(
    service: MarketService, report: MarketReport, story: Scenario, say: Callable[[str], None]
) -> list[OfferRow]:
    """Act as the farmer of each approve-mode farm: approve this run's pending offers."""
    approved = []
    for offer in report.pending_approvals(SystemClock().now()):
        if offer.farm_id not in story.approve_farms or offer.offtaker_id not in story.offtakers:
            continue
        command = ApproveOffer(
            command_id=f"demo.approve.{offer.offer_id}",
            negotiation_id=offer.negotiation_id,
            offer_id=offer.offer_id,
        )
        try:
            if service.handle(command, actor=f"farmer:{offer.farm_id}").duplicate:
                continue
        except CommandRejected as error:  # the negotiation closed meanwhile
            say(f"  [dim]could not approve {offer.offer_id}: {error}[/]")
            continue
        say(f"  farmer of {offer.farm_id} approved offer {offer.offer_id} ({offer.offtaker_id})")
        approved.append(offer)
    return approved


def settle(
    store: EventStore,
    story: Scenario,
    agents: Agents,
    timeout_s: float,
    say: Callable[[str], None],
) -> Outcome:
    service = MarketService(store, actor="demo")
    started = time.monotonic()
    report = load_report(store)
    outcome = Outcome(report, 0.0, settled=False)
    while time.monotonic() - started < timeout_s:
        agents.step()
        report = load_report(store, report)
        outcome.approvals += approve_pending(service, report, story, say)
        if settled(report, story):
            outcome.settled = True
            break
        time.sleep(POLL_S)
    outcome.report = report
    outcome.seconds = time.monotonic() - started
    return outcome
