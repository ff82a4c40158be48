"""The offtaker agent: turns a mandate into RFQs, scores offers, counters once, accepts within
budget, and closes negotiations it cannot win so their holds are released."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from agents._inflight import InFlight
from agents.brain import Brain
from agents.market import MarketView
from agents.scoring import score_offer
from hero.domain.negotiation import contract_id_for
from hero.domain.pricing import price_per_cu_hour
from schemas import (
    AcceptOffer,
    CloseNegotiation,
    Command,
    ContractCreated,
    CounterAccepted,
    CounterOffer,
    CounterOffered,
    CounterRejected,
    Envelope,
    Event,
    IssueRfq,
    Mandate,
    Money,
    NegotiationAwarded,
    NegotiationExpired,
    NegotiationFailed,
    OfferAccepted,
    OfferApproved,
    OfferDeclined,
    OfferMade,
    OfferWithdrawn,
    OfftakerMandateSet,
    RfqIssued,
    WorkloadSpec,
)
from schemas.catalogue.common import NodeStatus

__all__ = ["HOURS_PER_MONTH", "OfftakerBrain"]

HOURS_PER_MONTH = 720
RETRY_SEARCH = timedelta(seconds=1)
#: Invitations are drawn from this many times more of the cheapest farms than needed.
CANDIDATE_SPREAD = 3
#: After a negotiation fails, the next RFQ for that workload waits 1 s, then 2, 4 ... 16 s: long
#: enough not to flood a market that cannot serve, short enough to take capacity soon after
#: it frees (a race for the last few slots ends in seconds, not minutes).
FAILURE_BACKOFF_MAX = timedelta(seconds=16)


@dataclass(slots=True)
class _Track:
    rfq: RfqIssued
    offers: dict[str, OfferMade] = field(default_factory=dict)
    firm: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # withdrawn or refused
    counters: dict[str, bool | None] = field(default_factory=dict)  # offer -> answer
    accepted: set[str] = field(default_factory=set)
    declined: set[str] = field(default_factory=set)

    def live(self, now: datetime) -> list[OfferMade]:
        return [
            o
            for o in self.offers.values()
            if o.offer_id not in self.gone
            and o.offer_id not in self.accepted
            and o.expires_at > now
        ]

    def answered(self) -> bool:
        invited = set(self.rfq.invited_farms)
        heard = {o.farm_id for o in self.offers.values()} | self.declined
        return bool(invited) and invited <= heard


class OfftakerBrain(Brain):
    __slots__ = (
        "_backoff",
        "_contracts",
        "_inflight",
        "_issued",
        "_retry_at",
        "_tracks",
        "mandate",
        "offtaker_id",
    )

    def __init__(self, offtaker_id: str):
        super().__init__(f"offtaker:{offtaker_id}")
        self.offtaker_id = offtaker_id
        self.mandate: Mandate | None = None
        self._issued: dict[str, int] = {}  # workload -> RFQs issued so far
        self._tracks: dict[str, _Track] = {}  # open negotiations
        self._contracts: dict[str, tuple[str, str, Money]] = {}  # id -> (workload, farm, price/h)
        self._inflight = InFlight()
        self._retry_at: datetime | None = None
        self._backoff: dict[str, tuple[int, datetime]] = {}  # workload -> (failures, next try)

    # -- folding ---------------------------------------------------------------------------

    def observe(self, envelope: Envelope, event: Event, market: MarketView) -> None:
        match event:
            case OfftakerMandateSet() if event.offtaker_id == self.offtaker_id:
                self.mandate = event.mandate
            case RfqIssued() if event.offtaker_id == self.offtaker_id:
                self._issued[event.workload_id] = self._issued.get(event.workload_id, 0) + 1
                self._tracks[event.negotiation_id] = _Track(event)
                self._inflight.done(f"rfq:{event.workload_id}")
            case ContractCreated() if event.offtaker_id == self.offtaker_id:
                self._contracts[event.contract_id] = (
                    event.workload_id,
                    event.farm_id,
                    event.price_hour,
                )
            case NegotiationAwarded() | NegotiationFailed() | NegotiationExpired():
                track = self._tracks.pop(event.negotiation_id, None)
                if track is not None:
                    self._after_close(track.rfq.workload_id, event, envelope.recorded_at)
                self._inflight.done_prefix(f"{event.negotiation_id}:")
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
        delay = min(timedelta(seconds=2 ** (failures - 1)), FAILURE_BACKOFF_MAX)
        self._backoff[workload] = (failures, at + delay)

    def _observe_offer(self, track: _Track, event: Event) -> None:
        match event:
            case OfferMade():
                track.offers[event.offer_id] = event
                if event.firm:
                    track.firm.add(event.offer_id)
            case OfferDeclined():
                track.declined.add(event.farm_id)
            case OfferApproved():
                track.firm.add(event.offer_id)
            case OfferWithdrawn():
                track.gone.add(event.offer_id)
                track.accepted.discard(event.offer_id)  # a voided acceptance frees the replica
                self._inflight.done(f"{track.rfq.negotiation_id}:accept:{event.offer_id}")
            case CounterOffered():
                track.counters.setdefault(event.offer_id, None)
            case CounterAccepted():
                track.counters[event.offer_id] = True
            case CounterRejected():
                track.counters[event.offer_id] = False
            case OfferAccepted():
                track.accepted.add(event.offer_id)

    # -- deciding --------------------------------------------------------------------------

    def decide(self, now: datetime, market: MarketView) -> list[Command]:
        if self.mandate is None:
            return []
        commands: list[Command] = []
        for track in list(self._tracks.values()):
            commands += self._negotiate(track, self.mandate, now)
        self._retry_at = None
        for workload in self.mandate.workloads:
            commands += self._request(workload, self.mandate, market, now)
        return commands

    def next_wakeup(self) -> datetime | None:
        moments = [t.rfq.deadline for t in self._tracks.values()]
        moments += [o.expires_at for t in self._tracks.values() for o in t.offers.values()]
        if self._retry_at is not None:
            moments.append(self._retry_at)
        open_workloads = {t.rfq.workload_id for t in self._tracks.values()}
        moments += [t for w, (_, t) in self._backoff.items() if w not in open_workloads]
        return min(moments) if moments else None

    def monthly_spend(self) -> Money:
        total = Money.zero("USD")
        for _, _, price in self._contracts.values():
            total = total + price.times(HOURS_PER_MONTH)
        return total

    def _request(
        self, workload: WorkloadSpec, mandate: Mandate, market: MarketView, now: datetime
    ) -> list[Command]:
        """An RFQ for the replicas the workload still lacks, if none is open for it."""
        if any(t.rfq.workload_id == workload.workload_id for t in self._tracks.values()):
            return []
        have = sum(1 for w, _, _ in self._contracts.values() if w == workload.workload_id)
        need = workload.replicas - have
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

    def _negotiate(self, track: _Track, mandate: Mandate, now: datetime) -> list[Command]:
        rfq = track.rfq
        live = track.live(now)
        pending = [o for o in live if o.offer_id not in track.firm]
        if now < rfq.deadline and not (track.answered() and not pending):
            return []
        remaining = rfq.replicas - len(track.accepted)
        ranked = self._ranked(track, mandate, [o for o in live if o.offer_id in track.firm])
        commands = self._finish_accepts(track, now)
        committing = bool(commands) or any(
            contract_id_for(rfq.negotiation_id, o) not in self._contracts for o in track.accepted
        )
        spend = self.monthly_spend()
        for offer in ranked[:remaining]:
            commands += self._take(track, offer, mandate, spend, now)
            spend = spend + self._price(track, offer).times(HOURS_PER_MONTH)
        waiting = any(self._waiting(track, o) for o in ranked[:remaining])
        if commands or pending or waiting or committing:
            return commands
        return self._close(track, now)

    def _finish_accepts(self, track: _Track, now: datetime) -> list[Command]:
        """Repeat an accept whose contract has not appeared (its host may have died between
        the negotiation's record and the node's); the same command id finishes it once."""
        nego = track.rfq.negotiation_id
        commands: list[Command] = []
        for offer_id in sorted(track.accepted):
            if contract_id_for(nego, offer_id) in self._contracts:
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

    def _ranked(self, track: _Track, mandate: Mandate, offers: list[OfferMade]) -> list[OfferMade]:
        in_use = {farm for _, farm, _ in self._contracts.values()}
        regions = track.rfq.regions
        affordable = [
            o
            for o in offers
            if price_per_cu_hour(o.price_hour, o.resources) <= mandate.max_price_cu_hour
        ]
        return sorted(
            affordable,
            key=lambda o: (-score_offer(o, mandate, regions, in_use).total, o.offer_id),
        )

    def _price(self, track: _Track, offer: OfferMade) -> Money:
        if track.counters.get(offer.offer_id):
            return offer.price_hour.times(1 - self.mandate.counter_discount)  # type: ignore[union-attr]
        return offer.price_hour

    def _waiting(self, track: _Track, offer: OfferMade) -> bool:
        return offer.offer_id in track.counters and track.counters[offer.offer_id] is None

    def _take(
        self, track: _Track, offer: OfferMade, mandate: Mandate, spend: Money, now: datetime
    ) -> list[Command]:
        """Counter once if the mandate says so, else accept if the budget allows."""
        nego = track.rfq.negotiation_id
        if mandate.counter_discount > 0 and offer.offer_id not in track.counters:
            key = f"{nego}:counter:{offer.offer_id}"
            if not self._inflight.due(key, now):
                return []
            self._inflight.mark(key, now)
            return [
                CounterOffer(
                    command_id=f"{self.agent_id}:{key}",
                    negotiation_id=nego,
                    offer_id=offer.offer_id,
                    price_hour=offer.price_hour.times(1 - mandate.counter_discount),
                )
            ]
        if self._waiting(track, offer):
            return []
        if spend + self._price(track, offer).times(HOURS_PER_MONTH) > mandate.budget_month:
            return []
        key = f"{nego}:accept:{offer.offer_id}"
        if not self._inflight.due(key, now):
            return []
        self._inflight.mark(key, now)
        return [
            AcceptOffer(
                command_id=f"{self.agent_id}:{key}",
                negotiation_id=nego,
                offer_id=offer.offer_id,
            )
        ]

    def _close(self, track: _Track, now: datetime) -> list[Command]:
        nego = track.rfq.negotiation_id
        key = f"{nego}:close"
        if not self._inflight.due(key, now):
            return []
        self._inflight.mark(key, now)
        outcome: Literal["awarded", "failed", "expired"]
        if track.accepted:
            outcome, reason = "awarded", ""
        elif any(o.offer_id not in track.firm for o in track.offers.values()):
            outcome, reason = "expired", "offers awaiting approval expired"
        else:
            outcome = "failed"
            reason = (
                f"{len(track.offers)} offer(s), none acceptable within price and budget; "
                f"{len(track.declined)} farm(s) declined"
            )
        return [
            CloseNegotiation(
                command_id=f"{self.agent_id}:{key}",
                negotiation_id=nego,
                outcome=outcome,
                reason=reason,
            )
        ]
