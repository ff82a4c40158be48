"""The marketplace's command handler: load the aggregate, decide, append; retry on conflict.

Every command is applied at most once per stream (the store's command-id idempotency); a
command that touches several aggregates (an offer holds capacity on a node, then records the
offer on the negotiation) runs its steps in a fixed order, each idempotent, so repeating the
whole command after a crash finishes what was started and repeats nothing.

Ending a contract records its SLA outcome with it, the penalty priced at what the contract is
billed (``pricing``: Grid 3 at TFChain's prices, Grid 4 at the negotiated one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from hero.domain import negotiation as nego
from hero.domain import node as nodes
from hero.domain.billing import hourly_usd
from hero.domain.clock import Clock, SystemClock
from hero.domain.errors import Rejected
from hero.domain.pricing import GENESIS, PricingPolicy, price_per_cu_hour
from hero.store import ConcurrencyConflict, EventStore, NewEvent
from schemas import (
    AcceptOffer,
    AnswerCounter,
    ApproveOffer,
    CancelContract,
    ChangeNodeStatus,
    CloseNegotiation,
    Command,
    ContractCreated,
    CounterOffer,
    DeclineRfq,
    Event,
    ExpireHolds,
    FarmerPolicySet,
    FarmRegistered,
    IssueRfq,
    MakeOffer,
    Mandate,
    Money,
    NodeRegistered,
    OfferMade,
    OfftakerMandateSet,
    RecordScaleDecision,
    RegisterFarm,
    RegisterNode,
    RejectOffer,
    ReplicaMigrated,
    ReplicaPlaced,
    RfqIssued,
    ScaleDecided,
    SetFarmerPolicy,
    SetOfftakerMandate,
)
from schemas.catalogue.common import DeclineReason

__all__ = [
    "CommandRejected",
    "HandleResult",
    "MarketService",
    "farm_stream",
    "offtaker_stream",
    "scaling_stream",
]

S = TypeVar("S")


class CommandRejected(Rejected):
    """The command was refused by the rules; nothing it asked for was written."""


def farm_stream(farm_id: str) -> str:
    return f"farm-{farm_id}"


def offtaker_stream(offtaker_id: str) -> str:
    return f"offtaker-{offtaker_id}"


def scaling_stream(offtaker_id: str, workload_id: str) -> str:
    """One stream per workload: a workload id is unique only within its offtaker's mandate."""
    return f"scaling-{offtaker_id}-{workload_id}"


@dataclass
class HandleResult:
    events: list[Event] = field(default_factory=list)
    duplicate: bool = False


@dataclass(frozen=True)
class _Farm:
    registered: FarmRegistered | None = None


@dataclass
class _Aggregate(Generic[S]):
    initial: Callable[[], S]
    evolve: Callable[[S, Event], S]


_NODE = _Aggregate(nodes.NodeState, nodes.evolve)
_NEGOTIATION = _Aggregate(nego.NegotiationState, nego.evolve)


def _evolve_farm(state: _Farm, event: Event) -> _Farm:
    return _Farm(event) if isinstance(event, FarmRegistered) else state


_FARM: _Aggregate[_Farm] = _Aggregate(_Farm, _evolve_farm)


@dataclass(frozen=True)
class _Offtaker:
    mandate: Mandate | None = None
    """The last one set: each replaces the one before."""


def _evolve_offtaker(state: _Offtaker, event: Event) -> _Offtaker:
    return _Offtaker(event.mandate) if isinstance(event, OfftakerMandateSet) else state


_OFFTAKER: _Aggregate[_Offtaker] = _Aggregate(_Offtaker, _evolve_offtaker)


@dataclass(frozen=True)
class _Scaling:
    last_decided_at: datetime | None = None


def _evolve_scaling(state: _Scaling, event: Event) -> _Scaling:
    return _Scaling(event.decided_at) if isinstance(event, ScaleDecided) else state


_SCALING: _Aggregate[_Scaling] = _Aggregate(_Scaling, _evolve_scaling)


def _check_decision(mandate: Mandate | None, last: _Scaling, decision: ScaleDecided) -> None:
    """Refuse a decision the offtaker's mandate does not allow, or one older than the last."""
    if mandate is None:
        raise Rejected("unknown_offtaker", f"offtaker {decision.offtaker_id} has no mandate")
    spec = next((w for w in mandate.workloads if w.workload_id == decision.workload_id), None)
    if spec is None:
        raise Rejected(
            "unknown_workload",
            f"offtaker {decision.offtaker_id}'s mandate has no workload {decision.workload_id}",
        )
    policy = spec.autoscale
    if policy is None:
        raise Rejected("not_autoscaled", f"workload {decision.workload_id} is not autoscaled")
    if not policy.min_replicas <= decision.desired_replicas <= policy.max_replicas:
        raise Rejected(
            "out_of_bounds",
            f"{decision.desired_replicas} replicas is outside "
            f"[{policy.min_replicas}, {policy.max_replicas}]",
        )
    if last.last_decided_at is not None and decision.decided_at < last.last_decided_at:
        raise Rejected(
            "stale_decision",
            f"decided at {decision.decided_at}, before the last decision ({last.last_decided_at})",
        )


def _placement_events(
    cmd: AcceptOffer, contract: ContractCreated, pricing: PricingPolicy
) -> list[Event]:
    """Why the contract's replica went to its node and, for a replacement, the move."""
    scores = dict(cmd.scores)
    placed = ReplicaPlaced(
        offtaker_id=contract.offtaker_id,
        workload_id=contract.workload_id,
        replica_id=contract.contract_id,
        contract_id=contract.contract_id,
        farm_id=contract.farm_id,
        node_id=contract.node_id,
        grid=contract.grid,
        # compared as billed: Grid 3 at TFChain's prices, Grid 4 at the negotiated price
        price_cu_hour=price_per_cu_hour(hourly_usd(contract, pricing), contract.resources),
        scores=scores,
        total=sum(scores.values(), Decimal(0)) if scores else None,
    )
    if cmd.replaces_contract_id is None or cmd.replaces_node_id is None:
        return [placed]
    migrated = ReplicaMigrated(
        offtaker_id=contract.offtaker_id,
        workload_id=contract.workload_id,
        replica_id=cmd.replaces_contract_id,
        from_node_id=cmd.replaces_node_id,
        to_node_id=contract.node_id,
        from_contract_id=cmd.replaces_contract_id,
        to_contract_id=contract.contract_id,
        reason="node_down",
    )
    return [placed, migrated]


class MarketService:
    """Thread-safe; keeps a cache of folded aggregates so a command reads only new events."""

    def __init__(
        self,
        store: EventStore,
        clock: Clock | None = None,
        *,
        actor: str = "market",
        max_attempts: int = 50,
        cache_size: int = 50_000,
        pricing: PricingPolicy = GENESIS,
    ):
        self._store = store
        self._clock = clock or SystemClock()
        self._pricing = pricing
        self._actor = actor
        self._attempts = max_attempts
        self._cache: dict[str, tuple[int, Any]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop the cached aggregates (after a group commit that was undone)."""
        with self._lock:
            self._cache.clear()

    # -- the one entry point ----------------------------------------------------------------

    def handle(self, command: Command, *, actor: str | None = None) -> HandleResult:
        handler = self._handlers().get(type(command))
        if handler is None:
            raise CommandRejected(
                "unsupported", f"{type(command).__name__} is not a market command"
            )
        try:
            return handler(command, actor or self._actor)
        except CommandRejected:
            raise
        except Rejected as error:
            raise CommandRejected(error.reason, str(error).split(": ", 1)[-1]) from None

    def _handlers(self) -> dict[type[Command], Callable[[Any, str], HandleResult]]:
        return {
            RegisterFarm: self._register_farm,
            RegisterNode: self._register_node,
            ChangeNodeStatus: self._change_status,
            SetFarmerPolicy: self._set_policy,
            SetOfftakerMandate: self._set_mandate,
            IssueRfq: self._issue_rfq,
            MakeOffer: self._make_offer,
            DeclineRfq: self._decline,
            ApproveOffer: self._approve,
            RejectOffer: self._reject,
            CounterOffer: self._counter,
            AnswerCounter: self._answer_counter,
            AcceptOffer: self._accept,
            CloseNegotiation: self._close,
            ExpireHolds: self._expire_holds,
            CancelContract: self._cancel_contract,
            RecordScaleDecision: self._record_scale_decision,
        }

    # -- the machinery ----------------------------------------------------------------------

    def _load(self, stream: str, aggregate: _Aggregate[S]) -> tuple[int, S]:
        with self._lock:
            version, state = self._cache.get(stream, (0, None))
        if state is None:
            version, state = 0, aggregate.initial()
        for row in self._store.read_stream(stream, version + 1):
            state = aggregate.evolve(state, row.envelope().decode())
            version = row.version
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[stream] = (version, state)
        return version, state

    def _remember(
        self, stream: str, aggregate: _Aggregate[S], state: S, events: list[Event], version: int
    ) -> None:
        """Cache the state the append made: the events just written at the versions after the
        one ``state`` was read at (the append expected it), evolved here rather than read back
        and decoded again by the next command on the stream."""
        for event in events:
            state = aggregate.evolve(state, event)
        with self._lock:
            if len(self._cache) >= self._cache_size and stream not in self._cache:
                self._cache.pop(next(iter(self._cache)))
            self._cache[stream] = (version, state)

    def _apply(
        self,
        stream: str,
        aggregate: _Aggregate[S],
        decide: Callable[[S], list[Event]],
        command_id: str,
        actor: str,
        correlation_id: str | None = None,
    ) -> HandleResult:
        """Decide on fresh state and append; on a conflict, read again and decide again."""
        if self._store.command_result(stream, command_id) is not None:
            return HandleResult(duplicate=True)
        for _ in range(self._attempts):
            version, state = self._load(stream, aggregate)
            events = decide(state)
            if not events:
                return HandleResult()
            now = self._clock.now()
            new = [
                NewEvent.of(
                    e,
                    actor=actor,
                    occurred_at=now,
                    causation_id=command_id,
                    correlation_id=correlation_id,
                )
                for e in events
            ]
            try:
                result = self._store.append(stream, version, new, command_id)
            except ConcurrencyConflict:
                continue
            if not result.duplicate:
                self._remember(stream, aggregate, state, events, result.last_version)
            return HandleResult(
                events=[] if result.duplicate else events, duplicate=result.duplicate
            )
        raise CommandRejected("contention", f"stream {stream} kept moving; gave up after retries")

    def _exists(self, stream: str) -> bool:
        return self._store.stream_version(stream) > 0

    # -- farms, nodes, policies, mandates ------------------------------------------------------

    def _register_farm(self, cmd: RegisterFarm, actor: str) -> HandleResult:
        event = FarmRegistered(**cmd.model_dump(exclude={"command_id"}))

        def decide(farm: _Farm) -> list[Event]:
            if farm.registered is not None:
                raise Rejected("already_registered", f"farm {cmd.farm_id} is registered")
            return [event]

        return self._apply(farm_stream(cmd.farm_id), _FARM, decide, cmd.command_id, actor)

    def _register_node(self, cmd: RegisterNode, actor: str) -> HandleResult:
        if not self._exists(farm_stream(cmd.farm_id)):
            raise CommandRejected("unknown_farm", f"farm {cmd.farm_id} is not registered")
        event = NodeRegistered(**cmd.model_dump(exclude={"command_id"}))
        return self._on_node(
            cmd.node_id,
            lambda s: s.register(event),
            cmd.command_id,
            actor,
        )

    def _change_status(self, cmd: ChangeNodeStatus, actor: str) -> HandleResult:
        now = self._clock.now()
        return self._on_node(
            cmd.node_id,
            lambda s: s.change_status(cmd.status, cmd.reason, now),
            cmd.command_id,
            actor,
        )

    def _set_policy(self, cmd: SetFarmerPolicy, actor: str) -> HandleResult:
        if not self._exists(farm_stream(cmd.farm_id)):
            raise CommandRejected("unknown_farm", f"farm {cmd.farm_id} is not registered")
        event = FarmerPolicySet(
            farm_id=cmd.farm_id, node_id=cmd.node_id, policy=cmd.policy, source_text=cmd.source_text
        )
        return self._apply(
            farm_stream(cmd.farm_id), _FARM, lambda _: [event], cmd.command_id, actor
        )

    def _set_mandate(self, cmd: SetOfftakerMandate, actor: str) -> HandleResult:
        event = OfftakerMandateSet(
            offtaker_id=cmd.offtaker_id, mandate=cmd.mandate, source_text=cmd.source_text
        )
        return self._apply(
            offtaker_stream(cmd.offtaker_id), _OFFTAKER, lambda _: [event], cmd.command_id, actor
        )

    def _record_scale_decision(self, cmd: RecordScaleDecision, actor: str) -> HandleResult:
        decision = cmd.decision

        def decide(scaling: _Scaling) -> list[Event]:
            _, offtaker = self._load(offtaker_stream(decision.offtaker_id), _OFFTAKER)
            _check_decision(offtaker.mandate, scaling, decision)
            return [decision]

        return self._apply(
            scaling_stream(decision.offtaker_id, decision.workload_id),
            _SCALING,
            decide,
            cmd.command_id,
            actor,
        )

    # -- negotiations ---------------------------------------------------------------------

    def _issue_rfq(self, cmd: IssueRfq, actor: str) -> HandleResult:
        event = RfqIssued(**cmd.model_dump(exclude={"command_id"}))
        return self._apply(
            nego.negotiation_stream(cmd.negotiation_id),
            _NEGOTIATION,
            lambda s: s.issue(event),
            cmd.command_id,
            actor,
            cmd.negotiation_id,
        )

    def _negotiation(self, negotiation_id: str) -> nego.NegotiationState:
        return self._load(nego.negotiation_stream(negotiation_id), _NEGOTIATION)[1]

    def _on_negotiation(
        self,
        negotiation_id: str,
        decide: Callable[[nego.NegotiationState], list[Event]],
        command_id: str,
        actor: str,
    ) -> HandleResult:
        return self._apply(
            nego.negotiation_stream(negotiation_id),
            _NEGOTIATION,
            decide,
            command_id,
            actor,
            negotiation_id,
        )

    def _on_node(
        self,
        node_id: str,
        decide: Callable[[nodes.NodeState], list[Event]],
        command_id: str,
        actor: str,
        correlation_id: str | None = None,
    ) -> HandleResult:
        return self._apply(
            nodes.node_stream(node_id), _NODE, decide, command_id, actor, correlation_id
        )

    def _make_offer(self, cmd: MakeOffer, actor: str) -> HandleResult:
        """Hold on the node, then record the offer; the offer's record ends the command."""
        stream = nego.negotiation_stream(cmd.negotiation_id)
        if self._store.command_result(stream, cmd.command_id) is not None:
            return HandleResult(duplicate=True)
        now = self._clock.now()
        rfq = self._negotiation(cmd.negotiation_id).open_rfq()
        _, node = self._load(nodes.node_stream(cmd.node_id), _NODE)
        if node.farm_id != cmd.farm_id:
            raise CommandRejected("not_your_node", f"node {cmd.node_id} is not in {cmd.farm_id}")
        try:
            held = self._on_node(
                cmd.node_id,
                lambda s: s.hold(
                    cmd.offer_id, cmd.negotiation_id, rfq.resources, cmd.expires_at, now
                ),
                cmd.command_id,
                actor,
                cmd.negotiation_id,
            )
        except Rejected as error:
            if error.reason not in ("insufficient_capacity", "node_unavailable"):
                raise
            decline = DeclineRfq(
                command_id=cmd.command_id,
                negotiation_id=cmd.negotiation_id,
                farm_id=cmd.farm_id,
                node_id=cmd.node_id,
                reasons=[DeclineReason(error.reason)],
                detail=str(error),
                decision=cmd.decision,
            )
            return self._decline(decline, actor)
        offer = OfferMade(
            negotiation_id=cmd.negotiation_id,
            offer_id=cmd.offer_id,
            farm_id=cmd.farm_id,
            node_id=cmd.node_id,
            hold_id=cmd.offer_id,
            grid=node.grid,
            region=node.region,
            certified=node.certified,
            uptime_pct=node.uptime_pct,
            resources=rfq.resources,
            price_hour=cmd.price_hour,
            term_hours=cmd.term_hours,
            sla=cmd.sla,
            firm=cmd.firm,
            expires_at=cmd.expires_at,
            decision=cmd.decision,
        )
        try:
            offered = self._on_negotiation(
                cmd.negotiation_id, lambda s: s.make_offer(offer, now), cmd.command_id, actor
            )
        except Rejected:
            self._release(
                cmd.node_id, cmd.offer_id, "offer refused", f"{cmd.command_id}:undo", actor
            )
            raise
        return HandleResult(held.events + offered.events, held.duplicate and offered.duplicate)

    def _decline(self, cmd: DeclineRfq, actor: str) -> HandleResult:
        return self._on_negotiation(
            cmd.negotiation_id, lambda s: s.decline(cmd), cmd.command_id, actor
        )

    def _approve(self, cmd: ApproveOffer, actor: str) -> HandleResult:
        now = self._clock.now()
        return self._on_negotiation(
            cmd.negotiation_id, lambda s: s.approve(cmd.offer_id, now), cmd.command_id, actor
        )

    def _reject(self, cmd: RejectOffer, actor: str) -> HandleResult:
        state = self._negotiation(cmd.negotiation_id)
        offer = state.offer(cmd.offer_id)
        result = self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.withdraw(cmd.offer_id, cmd.reason),
            cmd.command_id,
            actor,
        )
        self._release(offer.offer.node_id, offer.offer.hold_id, cmd.reason, cmd.command_id, actor)
        return result

    def _counter(self, cmd: CounterOffer, actor: str) -> HandleResult:
        now = self._clock.now()
        return self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.counter(cmd.offer_id, cmd.price_hour, now, cmd.decision),
            cmd.command_id,
            actor,
        )

    def _answer_counter(self, cmd: AnswerCounter, actor: str) -> HandleResult:
        return self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.answer_counter(cmd.offer_id, cmd.accept, cmd.reasons, cmd.decision),
            cmd.command_id,
            actor,
        )

    def _accept(self, cmd: AcceptOffer, actor: str) -> HandleResult:
        """Record the acceptance on the negotiation (which counts replicas), then commit the
        hold on the node; if the node refuses, the acceptance is voided and the hold released.
        A repeat after a crash between the two finishes the commit (both steps idempotent)."""
        now = self._clock.now()
        recorded = self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.accept(cmd.offer_id, now, cmd.decision),
            cmd.command_id,
            actor,
        )
        state = self._negotiation(cmd.negotiation_id)
        offer = state.offers[cmd.offer_id]
        rfq = state.rfq
        if offer.status != "accepted" or rfq is None or offer.contract_id is None:
            return HandleResult(duplicate=True)  # voided or settled by an earlier attempt
        contract = ContractCreated(
            contract_id=offer.contract_id,
            negotiation_id=cmd.negotiation_id,
            offer_id=cmd.offer_id,
            hold_id=offer.offer.hold_id,
            offtaker_id=rfq.offtaker_id,
            workload_id=rfq.workload_id,
            farm_id=offer.offer.farm_id,
            node_id=offer.offer.node_id,
            grid=offer.offer.grid,
            resources=offer.offer.resources,
            price_hour=offer.price_hour,
            term_hours=offer.offer.term_hours,
            sla=offer.offer.sla,
            starts_at=now,
        )
        placement = _placement_events(cmd, contract, self._pricing)

        def commit(node: nodes.NodeState) -> list[Event]:
            created = node.commit(contract, now)
            return [*created, *placement] if created else []

        try:
            committed = self._on_node(
                offer.offer.node_id,
                commit,
                cmd.command_id,
                actor,
                cmd.negotiation_id,
            )
        except Rejected as error:
            self._void(cmd, offer.offer, str(error), actor)
            raise
        events = recorded.events + committed.events + self._award_if_complete(cmd, actor)
        return HandleResult(events, recorded.duplicate and committed.duplicate)

    def _award_if_complete(self, cmd: AcceptOffer, actor: str) -> list[Event]:
        """Award once every replica has a contract that exists on its node."""
        state = self._negotiation(cmd.negotiation_id)
        if state.status != "open" or state.rfq is None or len(state.accepted) < state.rfq.replicas:
            return []
        if not self._all_committed(state):
            return []  # another accept is still committing; that one will award
        close = CloseNegotiation(
            command_id=f"{cmd.negotiation_id}:award",
            negotiation_id=cmd.negotiation_id,
            outcome="awarded",
        )
        return self._close(close, actor).events

    def _all_committed(self, state: nego.NegotiationState) -> bool:
        """Every accepted offer's contract exists on its node."""
        for accepted in state.accepted:
            _, node = self._load(nodes.node_stream(accepted.offer.node_id), _NODE)
            if accepted.contract_id not in node.terms:
                return False
        return True

    def _void(self, cmd: AcceptOffer, offer: OfferMade, reason: str, actor: str) -> None:
        self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.void(cmd.offer_id, reason),
            f"{cmd.command_id}:void",
            actor,
        )
        self._release(offer.node_id, offer.hold_id, reason, f"{cmd.command_id}:release", actor)

    def _close(self, cmd: CloseNegotiation, actor: str) -> HandleResult:
        current = self._negotiation(cmd.negotiation_id)
        if cmd.outcome == "awarded" and not self._all_committed(current):
            raise CommandRejected(
                "contracts_pending", "an accepted offer has no contract yet; finish its accept"
            )
        if cmd.outcome != "awarded" and current.status == "open" and current.accepted:
            # A close decided on a view that missed an acceptance (a restarted agent's): a
            # failure would hide the contracts from the offtaker, who would ask for them again.
            raise CommandRejected(
                "offers_accepted",
                f"{len(current.accepted)} offer(s) of {cmd.negotiation_id} are accepted: "
                f"it can only be awarded, not {cmd.outcome}",
            )
        result = self._on_negotiation(
            cmd.negotiation_id,
            lambda s: s.close(cmd.outcome, cmd.reason, cmd.decisions),
            cmd.command_id,
            actor,
        )
        # Release what the close named, also when repeating a close that crashed half-way.
        state = self._negotiation(cmd.negotiation_id)
        for offer_id, offer in sorted(state.offers.items()):
            if offer.status == "released":
                self._release(
                    offer.offer.node_id,
                    offer.offer.hold_id,
                    f"negotiation {state.status}",
                    f"{cmd.command_id}:{offer_id}",
                    actor,
                )
        return result

    def _billed_hour(self, contract: ContractCreated) -> Money:
        return hourly_usd(contract, self._pricing)

    def _release(
        self, node_id: str, hold_id: str, reason: str, command_id: str, actor: str
    ) -> None:
        self._on_node(
            node_id,
            lambda s: s.release(hold_id, reason),
            command_id,
            actor,
        )

    def _expire_holds(self, cmd: ExpireHolds, actor: str) -> HandleResult:
        now = self._clock.now()
        return self._on_node(
            cmd.node_id,
            lambda s: s.expire(now),
            cmd.command_id,
            actor,
        )

    def _cancel_contract(self, cmd: CancelContract, actor: str) -> HandleResult:
        now = self._clock.now()
        return self._on_node(
            cmd.node_id,
            lambda s: s.cancel(cmd.contract_id, cmd.reason, now, self._billed_hour),
            cmd.command_id,
            actor,
        )
