"""The farmer agent: answers RFQs by its farm's policy, answers counters, sweeps expired holds."""

from __future__ import annotations

from datetime import datetime, timedelta

from agents._inflight import InFlight
from agents.brain import Brain
from agents.market import FarmView, MarketView
from agents.policy import (
    Decline,
    OfferPlan,
    evaluate,
    floor_price,
    node_rooms,
    plan_offers,
    terms_refused,
)
from agents.strategies.deliberation import apply_guardrails, decision_for
from agents.strategies.guardrails import FarmerLimits, guard_counter_answer, guard_farmer_offer
from agents.strategies.situations import counter_question, rfq_question
from hero.domain.pricing import hourly_price_at
from schemas import (
    AnswerCounter,
    CapacityHeld,
    Command,
    ContractCreated,
    CounterAccepted,
    CounterOffered,
    CounterRejected,
    DeclineRfq,
    Envelope,
    Event,
    ExpireHolds,
    HoldExpired,
    HoldReleased,
    MakeOffer,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferDeclined,
    OfferMade,
    RfqIssued,
)
from schemas.catalogue.common import DeclineReason, Negotiator, StrategyDecision

__all__ = ["FarmerBrain", "offer_id_for"]

#: How long a firm offer's hold outlives the RFQ's deadline, for the offtaker to accept it.
FIRM_HOLD_AFTER_DEADLINE = timedelta(seconds=30)
#: A hold past its deadline is swept this long after, so the sweep never races an accept.
SWEEP_GRACE = timedelta(seconds=1)


def offer_id_for(negotiation_id: str, farm_id: str, index: int) -> str:
    return f"{negotiation_id}.{farm_id}.{index}"


class FarmerBrain(Brain):
    __slots__ = ("_counters", "_inflight", "_offers", "_rfqs", "_sweep_at", "farm_id")

    def __init__(self, farm_id: str):
        super().__init__(f"farmer:{farm_id}")
        self.farm_id = farm_id
        self._rfqs: dict[str, RfqIssued] = {}  # RFQs not answered yet
        self._counters: dict[str, CounterOffered] = {}  # counters not answered yet
        self._offers: dict[str, OfferMade] = {}  # our offers in open negotiations
        # When the earliest hold on our nodes falls due, read from the model whenever a hold
        # event reaches us: the host asks ``next_wakeup`` without a view (and, after a replay,
        # before any ``decide``).
        self._sweep_at: datetime | None = None
        self._inflight = InFlight()

    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        match event:
            case RfqIssued():
                if not event.invited_farms or self.farm_id in event.invited_farms:
                    self._rfqs[event.negotiation_id] = event
            case OfferMade() | OfferDeclined() if event.farm_id == self.farm_id:
                self._rfqs.pop(event.negotiation_id, None)
                self._inflight.done_prefix(f"answer:{event.negotiation_id}")
                if isinstance(event, OfferMade):
                    self._offers[event.offer_id] = event
            case CapacityHeld() | HoldReleased() | HoldExpired() | ContractCreated():
                self._sweep_at = _earliest_hold(market, self.farm_id)
            case CounterOffered() if event.farm_id == self.farm_id:
                self._counters[event.offer_id] = event
            case CounterAccepted() | CounterRejected() if event.farm_id == self.farm_id:
                self._counters.pop(event.offer_id, None)
                self._inflight.done(f"counter:{event.offer_id}")
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                self._rfqs.pop(event.negotiation_id, None)
                self.forget_questions(f"{event.negotiation_id}:")
                ended = [
                    o
                    for o, offer in self._offers.items()
                    if offer.negotiation_id == event.negotiation_id
                ]
                for offer_id in ended:
                    del self._offers[offer_id]
                    self._counters.pop(offer_id, None)

    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        commands: list[Command] = []
        farm = market.farms.get(self.farm_id)
        if farm is None:
            return commands
        for nego_id, rfq in list(self._rfqs.items()):
            if rfq.deadline <= now:
                del self._rfqs[nego_id]
                continue
            key = f"answer:{nego_id}"
            if not self._inflight.due(key, now):
                continue
            answer = self._answer(rfq, farm, market, now)
            if answer is not None:  # None: the strategy's answer is awaited
                self._inflight.mark(key, now)
                commands += answer
        for offer_id, counter in list(self._counters.items()):
            key = f"counter:{offer_id}"
            if self._inflight.due(key, now):
                command = self._answer_counter(counter, market, now)
                if command is not None:
                    self._inflight.mark(key, now)
                    commands.append(command)
        commands += self._sweep(market, now)
        return commands

    def next_wakeup(self) -> datetime | None:
        """When the earliest live hold on our nodes is due for the sweep, or an awaited
        answer of the strategy is overdue."""
        moments = [self._sweep_at + SWEEP_GRACE] if self._sweep_at is not None else []
        deadline = self.answer_due()
        if deadline is not None:
            moments.append(deadline)
        return min(moments) if moments else None

    # -- answering an RFQ ------------------------------------------------------------------

    def _answer(
        self, rfq: RfqIssued, farm: FarmView, market: MarketView, now: datetime
    ) -> list[Command] | None:
        policy = farm.policy
        if policy is None or policy.negotiator != Negotiator.LLM:
            return self._rule_answer(rfq, evaluate(rfq, farm, market, now), market, now)
        advice = self.deliberation.consult(
            f"{rfq.negotiation_id}:rfq",
            lambda: rfq_question(
                self.agent_id, rfq, farm, market, _limits(rfq, farm, market, now)[0], now
            ),
            now,
        )
        if advice is None:
            return None
        limits, plan = _limits(rfq, farm, market, now)  # as they are now, not when asked
        guarded = apply_guardrails(advice, lambda move: guard_farmer_offer(move, limits))
        if guarded is None or guarded.move is None:
            note = decision_for(advice, guarded, rule_rationale=_rule_rationale(plan))
            return self._rule_answer(rfq, plan, market, now, note)
        note = decision_for(advice, guarded, rule_rationale="")
        if guarded.move.action == "decline":
            return [self._decline(rfq, [DeclineReason.NOT_WANTED], guarded.move.reason, note)]
        rooms = limits.nodes
        plans = [OfferPlan(node, price, rooms[node].firm) for node, price in guarded.offers]
        return self._offer_commands(rfq, plans, market, now, note)

    def _rule_answer(
        self,
        rfq: RfqIssued,
        plan: list[OfferPlan] | Decline,
        market: MarketView,
        now: datetime,
        note: StrategyDecision | None = None,
    ) -> list[Command]:
        if isinstance(plan, Decline):
            return [self._decline(rfq, list(plan.reasons), plan.detail, note)]
        return self._offer_commands(rfq, plan, market, now, note)

    def _decline(
        self,
        rfq: RfqIssued,
        reasons: list[DeclineReason],
        detail: str,
        note: StrategyDecision | None,
    ) -> Command:
        return DeclineRfq(
            command_id=f"{self.agent_id}:{rfq.negotiation_id}:decline",
            negotiation_id=rfq.negotiation_id,
            farm_id=self.farm_id,
            reasons=reasons,
            detail=detail,
            decision=note,
        )

    def _offer_commands(
        self,
        rfq: RfqIssued,
        plans: list[OfferPlan],
        market: MarketView,
        now: datetime,
        note: StrategyDecision | None,
    ) -> list[Command]:
        policy = market.farms[self.farm_id].policy
        assert policy is not None
        base = f"{self.agent_id}:{rfq.negotiation_id}"
        commands: list[Command] = []
        for index, offer in enumerate(plans):
            expires = (
                rfq.deadline + FIRM_HOLD_AFTER_DEADLINE
                if offer.firm
                else now + timedelta(seconds=policy.approval_ttl_s)
            )
            commands.append(
                MakeOffer(
                    command_id=f"{base}:offer:{index}",
                    negotiation_id=rfq.negotiation_id,
                    offer_id=offer_id_for(rfq.negotiation_id, self.farm_id, index),
                    farm_id=self.farm_id,
                    node_id=offer.node_id,
                    price_hour=offer.price_hour,
                    term_hours=rfq.term_hours,
                    sla=policy.sla,
                    firm=offer.firm,
                    expires_at=expires,
                    decision=note if index == 0 else _without_usage(note),
                )
            )
        return commands

    # -- answering a counter ---------------------------------------------------------------

    def _answer_counter(
        self, counter: CounterOffered, market: MarketView, now: datetime
    ) -> Command | None:
        """Take a counter at or above our floor for that offer, refuse one below it; with a
        model, take or refuse it as the model says, never below the floor."""
        offer = self._offers.get(counter.offer_id)
        farm = market.farms[self.farm_id]
        policy = farm.policy_for(offer.node_id) if offer else None
        floor = floor_price(policy, offer.resources) if offer and policy else None
        rule_accepts = floor is not None and counter.price_hour >= floor
        note: StrategyDecision | None = None
        accept = rule_accepts
        if (
            offer is not None
            and farm.policy is not None
            and farm.policy.negotiator == Negotiator.LLM
        ):
            advice = self.deliberation.consult(
                f"{counter.negotiation_id}:{counter.offer_id}:counter",
                lambda: counter_question(self.agent_id, counter, offer, floor, now),
                now,
            )
            if advice is None:
                return None
            guarded = apply_guardrails(
                advice, lambda move: guard_counter_answer(move, counter.price_hour, floor)
            )
            rationale = "at or above our floor" if rule_accepts else "below our floor"
            note = decision_for(advice, guarded, rule_rationale=f"the rules: {rationale}")
            if guarded is not None and guarded.move is not None:
                accept = guarded.move.action == "accept"
        reasons = (
            []
            if accept
            else [DeclineReason.BELOW_FLOOR if not rule_accepts else DeclineReason.NOT_WANTED]
        )
        return AnswerCounter(
            command_id=f"{self.agent_id}:{counter.offer_id}:counter",
            negotiation_id=counter.negotiation_id,
            offer_id=counter.offer_id,
            accept=accept,
            reasons=reasons,
            decision=note,
        )

    def _sweep(self, market: MarketView, now: datetime) -> list[Command]:
        """Expire holds past their deadline on our nodes (every hold ends)."""
        commands: list[Command] = []
        for node in market.farm_nodes(self.farm_id):
            expired = node.expired_holds(now - SWEEP_GRACE)
            if not expired:
                continue
            key = f"sweep:{node.node_id}:{expired[-1]}"
            if self._inflight.due(key, now):
                self._inflight.mark(key, now)
                commands.append(
                    ExpireHolds(
                        command_id=f"{self.agent_id}:expire:{node.node_id}:"
                        f"{len(expired)}:{expired[-1]}",
                        node_id=node.node_id,
                    )
                )
        return commands


def _earliest_hold(market: MarketView, farm_id: str) -> datetime | None:
    """When the soonest recorded hold on the farm's nodes expires (an expired one counts until
    it is released, as the sweep must still end it)."""
    return min(
        (expires for node in market.farm_nodes(farm_id) for _, expires in node.holds.values()),
        default=None,
    )


def _limits(
    rfq: RfqIssued, farm: FarmView, market: MarketView, now: datetime
) -> tuple[FarmerLimits, list[OfferPlan] | Decline]:
    """The limits a model's answer to ``rfq`` must keep, and what the rules would do."""
    rooms = node_rooms(rfq, farm, market, now)
    refused = terms_refused(rfq, farm, market)
    plan = plan_offers(rfq, refused, rooms)
    limits = FarmerLimits(
        ceiling=hourly_price_at(rfq.max_price_cu_hour, rfq.resources),
        replicas=rfq.replicas,
        nodes={room.node_id: room for room in rooms},
        refused_terms=tuple(
            ("term" if r == DeclineReason.TERM_TOO_LONG else "policy", f"policy: {r.value}")
            for r in refused
        ),
        default_nodes=tuple(p.node_id for p in plan) if isinstance(plan, list) else (),
    )
    return limits, plan


def _rule_rationale(plan: list[OfferPlan] | Decline) -> str:
    if isinstance(plan, Decline):
        return f"the rules decline: {plan.detail}"
    offers = ", ".join(f"{p.node_id} at {p.price_hour.amount} USD/h" for p in plan)
    return f"the rules offer the policy's ask: {offers}"


def _without_usage(note: StrategyDecision | None) -> StrategyDecision | None:
    """One model call answered for every offer: its usage is recorded on the first only."""
    if note is None:
        return None
    return note.model_copy(update={"tokens_in": 0, "tokens_out": 0, "latency_ms": 0})
