"""The offtaker agent: turns a mandate into RFQs, places replicas among the offers, counters
once, accepts within budget, and closes negotiations it cannot win so their holds are released.

It keeps each workload at its target: the mandate's count, or for an autoscaled workload the
autoscaler's last ``ScaleDecided``. Replicas on a node that is not up do not count: new capacity
is negotiated for them first (each accept names the contract it replaces), and their contracts
end once the replacement runs, or at once when the workload no longer needs them. Above the
target, the costliest contracts end first (:func:`hero.domain.placement.choose_scale_down`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from agents._inflight import InFlight
from agents.brain import Brain
from agents.market import MarketView
from agents.strategies.deliberation import apply_guardrails, decision_for
from agents.strategies.guardrails import OfftakerLimits, guard_offtaker
from agents.strategies.situations import offer_question
from hero.domain.negotiation import contract_id_for
from hero.domain.placement import (
    Candidate,
    ExistingReplica,
    PlacementRequest,
    choose_scale_down,
    place_replicas,
)
from hero.domain.pricing import price_per_cu_hour
from hero.model import Contract, Negotiation, Offer, OfferStatus
from schemas import (
    AcceptOffer,
    CancelContract,
    CloseNegotiation,
    Command,
    ContractCancelled,
    ContractCreated,
    CounterOffer,
    Envelope,
    Event,
    IssueRfq,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    ReplicaMigrated,
    RfqIssued,
    ScaleDecided,
    WorkloadSpec,
)
from schemas.catalogue.common import Negotiator, NodeStatus, StrategyDecision

__all__ = ["HOURS_PER_MONTH", "OfftakerBrain", "failure_backoff", "unusable"]

HOURS_PER_MONTH = 720
RETRY_SEARCH = timedelta(seconds=1)
#: Invitations are drawn from this many times more of the cheapest farms than needed.
CANDIDATE_SPREAD = 3
#: After a negotiation fails, the next RFQ for that workload waits 1 s, then 2, 4 ... 16 s: long
#: enough not to flood a market that cannot serve, short enough to take capacity soon after
#: it frees (a race for the last few slots ends in seconds, not minutes).
FAILURE_BACKOFF_MAX = timedelta(seconds=16)
#: After this many failures in a row (about five minutes at 16 s) the market is not about to
#: serve the mandate: the wait doubles again, up to :data:`HOPELESS_BACKOFF_MAX`, so a mandate
#: nothing satisfies costs a few events an hour, not hundreds a minute, for as long as it lasts.
PATIENT_FAILURES = 20
HOPELESS_BACKOFF_MAX = timedelta(minutes=15)
#: A wakeup that is always due.
_AT_ONCE = datetime(2000, 1, 1, tzinfo=UTC)


def failure_backoff(failures: int) -> timedelta:
    """The wait before the next RFQ for a workload after ``failures`` failures in a row."""
    if failures <= PATIENT_FAILURES:
        return min(timedelta(seconds=2 ** (failures - 1)), FAILURE_BACKOFF_MAX)
    longer = FAILURE_BACKOFF_MAX * (1 << min(failures - PATIENT_FAILURES, 16))
    return min(longer, HOPELESS_BACKOFF_MAX)


def unusable(mandate: Mandate) -> str | None:
    """Why nothing can be bought under ``mandate``, if so. Such mandates are refused where
    they enter now, but an old store may hold one: its agent must not ask the market in vain
    again and again."""
    for name in ("budget_month", "max_price_cu_hour"):
        amount: Money = getattr(mandate, name)
        if amount.amount <= 0:
            return f"{name} is {amount}: nothing can be bought with it"
    return None


@dataclass(slots=True)
class _Track:
    """One open negotiation of ours. What became of each offer (approved, withdrawn, countered,
    accepted) and which farms answered is read from the market model's records; the track keeps
    the offers as made (the placement and a strategy's question quote the node's certification
    and uptime, which only the event carries) and the offtaker's own moves."""

    rfq: RfqIssued
    nego: Negotiation
    records: Mapping[str, Offer]
    offers: dict[str, OfferMade] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # declined by the strategy
    notes: dict[str, StrategyDecision] = field(default_factory=dict)  # moves without an event

    def _status(self, offer_id: str) -> OfferStatus:
        record = self.records.get(offer_id)
        return record.status if record is not None else "open"

    def firm(self, offer_id: str) -> bool:
        """Made firm, or approved by its farmer since."""
        record = self.records.get(offer_id)
        return record is not None and (record.firm or record.approved)

    def accepted(self) -> set[str]:
        """Offers accepted and not withdrawn since (a voided acceptance frees the replica)."""
        return {o for o in self.offers if self._status(o) == "accepted"}

    def counter(self, offer_id: str) -> tuple[Money, bool | None] | None:
        """Our counter on the offer and the farmer's answer (None while awaited), if any."""
        record = self.records.get(offer_id)
        if record is None or record.counter is None:
            return None
        return record.counter, record.counter_accepted

    def live(self, now: datetime) -> list[OfferMade]:
        return [
            o
            for o in self.offers.values()
            if self._status(o.offer_id) not in ("withdrawn", "accepted") and o.expires_at > now
        ]

    def answered(self) -> bool:
        invited = set(self.rfq.invited_farms)
        return bool(invited) and invited <= self.nego.farms


class OfftakerBrain(Brain):
    __slots__ = (
        "_awaited",
        "_backoff",
        "_inflight",
        "_issued",
        "_naming",
        "_redecide",
        "_replaced",
        "_retry_at",
        "_scores",
        "_targets",
        "_tracks",
        "mandate_refused",
        "offtaker_id",
    )

    def __init__(self, offtaker_id: str):
        super().__init__(f"offtaker:{offtaker_id}")
        self.offtaker_id = offtaker_id
        #: Why no RFQ is issued under the mandate (nothing can be bought with it), if so; its
        #: open negotiations still close, so their holds are released.
        self.mandate_refused: str | None = None
        self._issued: dict[str, int] = {}  # workload -> RFQs issued so far
        self._tracks: dict[str, _Track] = {}  # open negotiations
        #: Contract -> workload, for contracts an award named whose ContractCreated has not
        #: arrived: it is on the node's stream, which Kafka may deliver after the award (another
        #: partition; a restarted host reads a backlog of each). They are replicas all the same.
        self._awaited: dict[str, str] = {}
        self._targets: dict[str, tuple[datetime, int]] = {}  # workload -> last decision
        self._replaced: dict[str, str] = {}  # contract on a failed node -> its replacement
        self._scores: dict[str, dict[str, Decimal]] = {}  # offer -> its placement's scores
        self._naming: dict[str, str] = {}  # offer accepted -> the failed contract it replaces
        self._inflight = InFlight()
        self._retry_at: datetime | None = None
        self._backoff: dict[str, tuple[int, datetime]] = {}  # workload -> (failures, next try)
        self._redecide = False  # decide again at once: a strategy declined an offer

    # -- folding ---------------------------------------------------------------------------

    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        match event:
            case OfftakerMandateSet() if event.offtaker_id == self.offtaker_id:
                self.mandate_refused = unusable(event.mandate)
                self._backoff.clear()  # new terms: worth asking the market again at once
            case RfqIssued() if event.offtaker_id == self.offtaker_id:
                self._issued[event.workload_id] = self._issued.get(event.workload_id, 0) + 1
                nego = market.negotiations[event.negotiation_id]
                self._tracks[event.negotiation_id] = _Track(event, nego, market.state.offers)
                self._inflight.done(f"rfq:{event.workload_id}")
            case ContractCreated() if event.offtaker_id == self.offtaker_id:
                self._awaited.pop(event.contract_id, None)
            case ContractCancelled():
                self._awaited.pop(event.contract_id, None)
                self._replaced.pop(event.contract_id, None)
            case ScaleDecided() if event.offtaker_id == self.offtaker_id:
                last = self._targets.get(event.workload_id)
                if last is None or last[0] <= event.decided_at:
                    self._targets[event.workload_id] = (event.decided_at, event.desired_replicas)
            case ReplicaMigrated() if event.offtaker_id == self.offtaker_id:
                self._replaced[event.from_contract_id] = event.to_contract_id
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                track = self._tracks.pop(event.negotiation_id, None)
                if track is not None:
                    self._after_close(track.rfq.workload_id, event, envelope.recorded_at)
                    if isinstance(event, NegotiationAwarded):
                        self._await_contracts(track.rfq.workload_id, event.contract_ids, market)
                    for offer_id in track.offers:
                        self._scores.pop(offer_id, None)
                        self._naming.pop(offer_id, None)
                self._inflight.done_prefix(f"{event.negotiation_id}:")
                self.forget_questions(f"{event.negotiation_id}:")
            case _:
                track = self._tracks.get(getattr(event, "negotiation_id", ""))
                if track is not None:
                    self._observe_offer(track, event)

    def _after_close(self, workload: str, event: Event, at: datetime) -> None:
        """Back off exponentially after failures, so a market that cannot serve the mandate
        is not flooded with RFQs; an award resets it."""
        if isinstance(event, NegotiationAwarded):
            self._backoff.pop(workload, None)
            return
        failures = self._backoff.get(workload, (0, at))[0] + 1
        self._backoff[workload] = (failures, at + failure_backoff(failures))

    def _await_contracts(self, workload: str, contract_ids: list[str], market: MarketView) -> None:
        for contract_id in contract_ids:
            if contract_id not in market.contracts:
                self._awaited[contract_id] = workload

    def _observe_offer(self, track: _Track, event: Event) -> None:
        match event:
            case OfferMade():
                track.offers[event.offer_id] = event
            case OfferWithdrawn():
                self._inflight.done(f"{track.rfq.negotiation_id}:accept:{event.offer_id}")

    # -- deciding --------------------------------------------------------------------------

    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        mandate = self.mandate(market)
        if mandate is None:
            return []
        commands: list[Command] = []
        self._redecide = False
        for track in list(self._tracks.values()):
            commands += self._negotiate(track, mandate, market, now)
        self._retry_at = None
        for workload in mandate.workloads:
            if self.mandate_refused is None:
                commands += self._request(workload, mandate, market, now)
            commands += self._release(workload, market, now)
        return commands

    def mandate(self, market: MarketView) -> Mandate | None:
        """The offtaker's mandate as last set (the model's)."""
        return market.state.mandates.get(self.offtaker_id)

    def next_wakeup(self) -> datetime | None:
        moments = [t.rfq.deadline for t in self._tracks.values()]
        moments += [o.expires_at for t in self._tracks.values() for o in t.offers.values()]
        if self._retry_at is not None:
            moments.append(self._retry_at)
        open_workloads = {t.rfq.workload_id for t in self._tracks.values()}
        moments += [t for w, (_, t) in self._backoff.items() if w not in open_workloads]
        deadline = self.answer_due()
        if deadline is not None:
            moments.append(deadline)
        if self._redecide and self._tracks:
            moments.append(_AT_ONCE)
        return min(moments) if moments else None

    def monthly_spend(self, market: MarketView) -> Money:
        total = Money.zero("USD")
        for contract in market.live_contracts_of(self.offtaker_id).values():
            total = total + contract.price_hour.times(HOURS_PER_MONTH)
        return total

    # -- the replica count ------------------------------------------------------------------

    def target(self, workload: WorkloadSpec) -> int:
        """How many replicas the workload should run: the autoscaler's last decision for an
        autoscaled workload, else (and until one) the mandate's count."""
        decided = self._targets.get(workload.workload_id)
        if workload.autoscale is None or decided is None:
            return workload.replicas
        return decided[1]

    def replicas(
        self, workload_id: str, market: MarketView
    ) -> tuple[list[Contract], list[Contract]]:
        """The workload's live contracts: those on a node that is up, and the others."""
        healthy: list[Contract] = []
        failing: list[Contract] = []
        for contract in market.live_contracts_of(self.offtaker_id).values():
            if contract.workload_id != workload_id:
                continue
            node = market.nodes.get(contract.node_id)
            up = node is None or node.status == NodeStatus.UP
            (healthy if up else failing).append(contract)
        return healthy, failing

    def _release(self, workload: WorkloadSpec, market: MarketView, now: datetime) -> list[Command]:
        """End what the workload no longer needs: failed replicas once replaced (or once the
        target no longer needs them), then the costliest healthy ones above the target."""
        healthy, failing = self.replicas(workload.workload_id, market)
        target = self.target(workload)
        keep = max(target - len(healthy), 0)  # failed replicas still waiting for a new home
        waiting = [c for c in failing if c.contract_id not in self._replaced]
        ending = [(c, "migrated: node down") for c in failing if c.contract_id in self._replaced]
        ending += [
            (c, "node down: not needed")
            for c in sorted(waiting, key=lambda c: c.contract_id, reverse=True)[
                : max(len(waiting) - keep, 0)
            ]
        ]
        surplus = len(healthy) - target
        if surplus > 0:
            # A decided scale-down, or more than the mandate asks (a failed node came back
            # after its replicas were moved): either way the costliest go first.
            reason = "scale_down" if workload.autoscale is not None else "surplus"
            chosen = set(choose_scale_down(healthy, surplus))
            ending += [(c, reason) for c in healthy if c.contract_id in chosen]
        commands: list[Command] = []
        for contract, reason in ending:
            key = f"{contract.contract_id}:cancel"
            if self._inflight.due(key, now):
                self._inflight.mark(key, now)
                commands.append(
                    CancelContract(
                        command_id=f"{self.agent_id}:{key}",
                        contract_id=contract.contract_id,
                        node_id=contract.node_id,
                        reason=reason,
                    )
                )
        return commands

    def _request(
        self, workload: WorkloadSpec, mandate: Mandate, market: MarketView, now: datetime
    ) -> list[Command]:
        """An RFQ for the replicas the workload still lacks, if none is open for it."""
        if any(t.rfq.workload_id == workload.workload_id for t in self._tracks.values()):
            return []
        healthy, _ = self.replicas(workload.workload_id, market)
        awaited = sum(1 for w in self._awaited.values() if w == workload.workload_id)
        need = self.target(workload) - len(healthy) - awaited
        key = f"rfq:{workload.workload_id}"
        if need <= 0 or not self._inflight.due(key, now):
            return []
        _, next_try = self._backoff.get(workload.workload_id, (0, now))
        if next_try > now:
            return []
        farms = self._candidates(workload, mandate, market, now, need * mandate.offers_per_replica)
        if not farms:
            self._retry_at = now + RETRY_SEARCH
            return []
        self._inflight.mark(key, now)
        number = self._issued.get(workload.workload_id, 0) + 1
        negotiation_id = f"{self.offtaker_id}.{workload.workload_id}.{number}"
        return [
            IssueRfq(
                command_id=f"{self.agent_id}:{negotiation_id}:rfq",
                negotiation_id=negotiation_id,
                offtaker_id=self.offtaker_id,
                workload_id=workload.workload_id,
                resources=workload.resources,
                replicas=need,
                regions=workload.regions,
                grids=workload.grids,
                min_uptime_pct=workload.min_uptime_pct,
                max_price_cu_hour=mandate.max_price_cu_hour,
                term_hours=mandate.term_hours,
                deadline=now + timedelta(seconds=float(mandate.offer_window_s)),
                invited_farms=farms,
                certified_only=mandate.certified_only,
            )
        ]

    def _candidates(
        self,
        workload: WorkloadSpec,
        mandate: Mandate,
        market: MarketView,
        now: datetime,
        wanted: int | None = None,
    ) -> list[str]:
        """Up to ``wanted`` farms likely to offer: serving the grid and region, certified if
        asked, with a node that has room now; drawn from the cheapest ``SPREAD * wanted`` (and
        every farm ranked as good as the last of those) at an offset of the offtaker's own, so
        that offtakers asking at once do not all invite the same few farms (which would then
        decline most of them for lack of capacity)."""
        pool_size = None if wanted is None else wanted * CANDIDATE_SPREAD
        found: list[str] = []
        last_rank = None
        for rank, farm in market.farms_ranked(workload.resources):
            if pool_size is not None and len(found) >= pool_size and rank != last_rank:
                break  # the pool is full and this farm is worse than all in it
            if farm.grid not in workload.grids:
                continue
            if workload.regions and farm.region not in workload.regions:
                continue
            if mandate.certified_only and not farm.certified:
                continue
            if any(
                n.status == NodeStatus.UP and n.fits(workload.resources, now)
                for n in market.farm_nodes(farm.farm_id)
            ):
                found.append(farm.farm_id)
                last_rank = rank
        if wanted is None or len(found) <= wanted:
            return found
        start = zlib.crc32(f"{self.agent_id}/{workload.workload_id}".encode()) % len(found)
        return [found[(start + i) % len(found)] for i in range(wanted)]

    def _negotiate(
        self, track: _Track, mandate: Mandate, market: MarketView, now: datetime
    ) -> list[Command]:
        rfq = track.rfq
        live = track.live(now)
        pending = [o for o in live if not track.firm(o.offer_id)]
        if now < rfq.deadline and not (track.answered() and not pending):
            return []
        accepted = track.accepted()
        remaining = rfq.replicas - len(accepted)
        firm = [o for o in live if track.firm(o.offer_id) and o.offer_id not in track.skipped]
        ranked = self._placed(track, mandate, firm, remaining, market, now)
        commands = self._finish_accepts(track, market, now)
        committing = bool(commands) or any(
            contract_id_for(rfq.negotiation_id, o) not in market.contracts for o in accepted
        )
        # An accept sent but not yet seen: closing now would fail a negotiation it may win.
        accepting = any(
            not self._inflight.due(f"{rfq.negotiation_id}:accept:{o}", now)
            for o in track.offers
            if o not in accepted
        )
        spend = self.monthly_spend(market)
        _, failing = self.replicas(rfq.workload_id, market)
        homeless = [
            c
            for c in sorted(failing, key=lambda c: c.contract_id)
            if c.contract_id not in self._replaced and c.contract_id not in self._naming.values()
        ]
        for offer in ranked[:remaining]:
            commands += self._take(track, offer, mandate, spend, market, now, homeless)
            spend = spend + self._price(track, offer).times(HOURS_PER_MONTH)
        waiting = any(self._waiting(track, o) for o in ranked[:remaining])
        if commands or pending or waiting or committing or accepting:
            return commands
        return self._close(track, now)

    def _finish_accepts(self, track: _Track, market: MarketView, now: datetime) -> list[Command]:
        """Repeat an accept whose contract has not appeared (its host may have died between
        the negotiation's record and the node's); the same command id finishes it once."""
        nego = track.rfq.negotiation_id
        commands: list[Command] = []
        for offer_id in sorted(track.accepted()):
            if contract_id_for(nego, offer_id) in market.contracts:
                continue
            key = f"{nego}:accept:{offer_id}"
            if self._inflight.due(key, now):
                self._inflight.mark(key, now)
                commands.append(
                    AcceptOffer(
                        command_id=f"{self.agent_id}:{key}", negotiation_id=nego, offer_id=offer_id
                    )
                )
        return commands

    def _placed(
        self,
        track: _Track,
        mandate: Mandate,
        offers: list[OfferMade],
        count: int,
        market: MarketView,
        now: datetime,
    ) -> list[OfferMade]:
        """The offers to take for ``count`` replicas, best first, as the placement rules rank
        them across both grids (:func:`hero.domain.placement.place_replicas`); each one's
        scores are kept for its accept, which records them."""
        rfq = track.rfq
        affordable = [
            o
            for o in offers
            if price_per_cu_hour(o.price_hour, o.resources) <= mandate.max_price_cu_hour
        ]
        if count <= 0 or not affordable:
            return []
        request = PlacementRequest(
            workload_id=rfq.workload_id,
            resources=rfq.resources,
            count=count,
            max_price_cu_hour=mandate.max_price_cu_hour,
            regions=tuple(rfq.regions),
            grids=tuple(rfq.grids),
            certified_only=rfq.certified_only,
            prefer_grid=mandate.prefer_grid,
            max_share_per_farm=mandate.max_share_per_farm or Decimal(1),
        )
        healthy, _ = self.replicas(rfq.workload_id, market)
        existing = [
            ExistingReplica(
                replica_id=c.contract_id,
                contract_id=c.contract_id,
                node_id=c.node_id,
                farm_id=c.farm_id,
                grid=c.grid,
            )
            for c in healthy
        ]
        candidates = [_candidate(o, market, now) for o in affordable]
        plan = place_replicas(request, candidates, existing)
        by_id = {o.offer_id: o for o in affordable}
        for placement in plan.placements:
            self._scores[placement.candidate_id] = dict(placement.scores)
        return [by_id[p.candidate_id] for p in plan.placements]

    def _price(self, track: _Track, offer: OfferMade) -> Money:
        """What an accept binds: the counter the farmer took (as recorded), else the ask."""
        counter = track.counter(offer.offer_id)
        if counter is not None and counter[1]:
            return counter[0]
        return offer.price_hour

    def _waiting(self, track: _Track, offer: OfferMade) -> bool:
        """A counter awaits the farmer's answer, or a move awaits the strategy's."""
        counter = track.counter(offer.offer_id)
        if counter is not None and counter[1] is None:
            return True
        return self.awaiting_answer(f"{track.rfq.negotiation_id}:{offer.offer_id}:")

    def _take(
        self,
        track: _Track,
        offer: OfferMade,
        mandate: Mandate,
        spend: Money,
        market: MarketView,
        now: datetime,
        homeless: list[Contract],
    ) -> list[Command]:
        """The move on one offer the placement chose: the rules', or the model's within the
        guardrails (the rules decide when the model cannot)."""
        if mandate.negotiator != Negotiator.LLM:
            return self._rule_take(track, offer, mandate, spend, market, now, homeless)
        if self._waiting(track, offer):
            return []
        nego, offer_id = track.rfq.negotiation_id, offer.offer_id
        countered = track.counter(offer_id) is not None
        limits = OfftakerLimits(
            ask=offer.price_hour,
            agreed=self._price(track, offer),
            resources=offer.resources,
            max_price_cu_hour=mandate.max_price_cu_hour,
            budget_left_month=mandate.budget_month - spend,
            may_counter=not countered,
        )
        question_id = f"{nego}:{offer_id}:{'countered' if countered else 'offer'}"
        advice = self.deliberation.consult(
            question_id,
            lambda: offer_question(
                self.agent_id,
                question_id,
                track.rfq,
                offer,
                limits,
                counter=self._counter_seen(track, offer),
                others=track.live(now),
                needed=track.rfq.replicas - len(track.accepted()),
                spend_month=spend,
                now=now,
            ),
            now,
        )
        if advice is None:
            return []
        guarded = apply_guardrails(advice, lambda move: guard_offtaker(move, limits))
        if guarded is None or guarded.move is None:
            rationale = self._rule_rationale(track, offer, mandate, spend)
            note = decision_for(advice, guarded, rule_rationale=rationale, offer_id=offer_id)
            commands = self._rule_take(track, offer, mandate, spend, market, now, homeless, note)
            if not commands:
                track.notes.setdefault(offer_id, note)
            return commands
        note = decision_for(advice, guarded, rule_rationale="", offer_id=offer_id)
        move = guarded.move
        if move.action == "decline":
            track.skipped.add(offer_id)
            track.notes[offer_id] = note
            self._redecide = True  # the placement picks another offer in its place
            return []
        if move.action == "counter" and move.price_hour is not None:
            price = Money(amount=move.price_hour, currency=offer.price_hour.currency)
            return self._counter_command(track, offer, price, now, note)
        return self._accept_command(track, offer, market, now, homeless, note)

    def _counter_seen(self, track: _Track, offer: OfferMade) -> tuple[Money, bool | None] | None:
        return track.counter(offer.offer_id)

    def _rule_rationale(
        self, track: _Track, offer: OfferMade, mandate: Mandate, spend: Money
    ) -> str:
        if mandate.counter_discount > 0 and track.counter(offer.offer_id) is None:
            return f"the rules counter {mandate.counter_discount:%} below the ask"
        price = self._price(track, offer)
        if spend + price.times(HOURS_PER_MONTH) > mandate.budget_month:
            return "the rules do not accept: the monthly budget would be exceeded"
        return f"the rules accept at {price.amount} USD/h: within the price limit and budget"

    def _rule_take(
        self,
        track: _Track,
        offer: OfferMade,
        mandate: Mandate,
        spend: Money,
        market: MarketView,
        now: datetime,
        homeless: list[Contract],
        note: StrategyDecision | None = None,
    ) -> list[Command]:
        """Counter once if the mandate says so, else accept if the budget allows; the accept
        takes over a replica of a failed node when one still has no new home."""
        if mandate.counter_discount > 0 and track.counter(offer.offer_id) is None:
            price = offer.price_hour.times(1 - mandate.counter_discount)
            return self._counter_command(track, offer, price, now, note)
        if self._waiting(track, offer):
            return []
        if spend + self._price(track, offer).times(HOURS_PER_MONTH) > mandate.budget_month:
            return []
        return self._accept_command(track, offer, market, now, homeless, note)

    def _counter_command(
        self,
        track: _Track,
        offer: OfferMade,
        price: Money,
        now: datetime,
        note: StrategyDecision | None,
    ) -> list[Command]:
        nego = track.rfq.negotiation_id
        key = f"{nego}:counter:{offer.offer_id}"
        if not self._inflight.due(key, now):
            return []
        self._inflight.mark(key, now)
        return [
            CounterOffer(
                command_id=f"{self.agent_id}:{key}",
                negotiation_id=nego,
                offer_id=offer.offer_id,
                price_hour=price,
                decision=note,
            )
        ]

    def _accept_command(
        self,
        track: _Track,
        offer: OfferMade,
        market: MarketView,
        now: datetime,
        homeless: list[Contract],
        note: StrategyDecision | None,
    ) -> list[Command]:
        nego = track.rfq.negotiation_id
        key = f"{nego}:accept:{offer.offer_id}"
        if not self._inflight.due(key, now):
            return []
        self._inflight.mark(key, now)
        replaces = self._naming.get(offer.offer_id)
        if replaces is None and homeless:
            replaces = self._naming[offer.offer_id] = homeless.pop(0).contract_id
        old = market.live_contracts_of(self.offtaker_id).get(replaces) if replaces else None
        return [
            AcceptOffer(
                command_id=f"{self.agent_id}:{key}",
                negotiation_id=nego,
                offer_id=offer.offer_id,
                scores=self._scores.get(offer.offer_id, {}),
                replaces_contract_id=old.contract_id if old else None,
                replaces_node_id=old.node_id if old else None,
                decision=note,
            )
        ]

    def _close(self, track: _Track, now: datetime) -> list[Command]:
        nego = track.rfq.negotiation_id
        key = f"{nego}:close"
        if not self._inflight.due(key, now):
            return []
        self._inflight.mark(key, now)
        outcome: Literal["awarded", "failed", "expired"]
        accepted = track.accepted()
        if accepted:
            outcome, reason = "awarded", ""
        elif any(not track.firm(o.offer_id) for o in track.offers.values()):
            outcome, reason = "expired", "offers awaiting approval expired"
        else:
            outcome = "failed"
            reason = (
                f"{len(track.offers)} offer(s), none acceptable within price and budget; "
                f"{track.nego.declines} farm(s) declined"
            )
        notes = [
            note
            for offer_id, note in sorted(track.notes.items())
            if (offer_id not in accepted and track.counter(offer_id) is None)
            or offer_id in track.skipped
        ]
        return [
            CloseNegotiation(
                command_id=f"{self.agent_id}:{key}",
                negotiation_id=nego,
                outcome=outcome,
                reason=reason,
                decisions=notes,
            )
        ]


def _candidate(offer: OfferMade, market: MarketView, now: datetime) -> Candidate:
    """An offer as a placement candidate: its node's size, and what is free there with the
    offer's own hold counted back in (the replica would take exactly that)."""
    node = market.nodes.get(offer.node_id)
    candidate = Candidate.from_offer(offer, total=node.total if node else None)
    if node is None:
        return candidate
    return candidate.model_copy(update={"free": node.free(now) + offer.resources})
