"""Given / when / then for the pure aggregates: events in, a decision, events (or a refusal) out.

For example ``given(node.fold, registered, held).when(lambda s: s.release("h1", "x"))`` then
``.then(released)``, ``.then_nothing()`` or ``.rejected("insufficient_capacity")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Generic, Literal, TypeVar

from hero.domain import negotiation, node
from hero.domain.clock import ManualClock
from hero.domain.errors import Rejected
from hero.market.service import HandleResult, MarketService
from hero.store import EventStore, MemoryEventStore
from schemas import (
    AcceptOffer,
    CloseNegotiation,
    Command,
    ContractCreated,
    Event,
    Grid,
    IssueRfq,
    MakeOffer,
    Money,
    RegisterFarm,
    RegisterNode,
    Resources,
    Sla,
)

__all__ = ["SHAPE", "SLA", "T0", "Given", "Market", "Outcome", "ctr", "given", "usd"]

S = TypeVar("S")


@dataclass(frozen=True)
class Outcome(Generic[S]):
    history: list[Event]
    fold: Callable[[list[Event]], S]
    events: list[Event] | None
    error: Rejected | None

    def then(self, *expected: Event) -> Outcome[S]:
        """The decision returned exactly ``expected``, in order (nothing: no events)."""
        assert self.error is None, f"expected events, got Rejected({self.error})"
        assert self.events == list(expected)
        return self

    def then_nothing(self) -> Outcome[S]:
        return self.then()

    def then_types(self, *names: str) -> Outcome[S]:
        assert self.error is None, f"expected events, got Rejected({self.error})"
        assert [type(e).__name__ for e in self.events or []] == list(names)
        return self

    def rejected(self, reason: str) -> Rejected:
        """The decision was refused with this stable reason code."""
        assert self.events is None, f"expected Rejected({reason}), got events {self.events}"
        assert self.error is not None
        assert self.error.reason == reason, f"expected {reason!r}, got {self.error.reason!r}"
        return self.error

    @property
    def state(self) -> S:
        """The state after the history and the new events (the decision must have succeeded)."""
        assert self.events is not None, f"no state after a refusal ({self.error})"
        return self.fold([*self.history, *self.events])


@dataclass(frozen=True)
class Given(Generic[S]):
    fold: Callable[[list[Event]], S]
    history: list[Event]

    @property
    def state(self) -> S:
        return self.fold(self.history)

    def when(self, decide: Callable[[S], list[Event]]) -> Outcome[S]:
        state = self.state
        try:
            events = decide(state)
        except Rejected as error:
            return Outcome(self.history, self.fold, None, error)
        return Outcome(self.history, self.fold, list(events), None)


def given(fold: Callable[[list[Event]], S], *history: Event) -> Given[S]:
    return Given(fold, list(history))


# --- a market over an in-memory store, for the service tests ---------------------------------

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SHAPE = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)
SLA = Sla(uptime_pct=Decimal("99"))


def usd(amount: str) -> Money:
    return Money.of(amount, "USD")


def ctr(negotiation_id: str, offer_id: str) -> str:
    """The id the market gives the contract of ``offer_id`` in ``negotiation_id``."""
    return negotiation.contract_id_for(negotiation_id, offer_id)


class Market:
    """One MarketService on a store and a ManualClock, with short ways to say common commands.

    Command ids default to ``<verb>-<subject>`` so a test can repeat a command by repeating
    the call; pass ``command_id`` to make a distinct attempt.
    """

    def __init__(self, store: EventStore | None = None, clock: ManualClock | None = None):
        self.clock = clock or ManualClock(T0)
        self.store = store if store is not None else MemoryEventStore(self.clock)
        self.service = MarketService(self.store, self.clock)

    def handle(self, command: Command) -> HandleResult:
        return self.service.handle(command)

    # -- commands ------------------------------------------------------------------------

    def farm(self, farm_id: str = "farm_1") -> HandleResult:
        return self.handle(
            RegisterFarm(
                command_id=f"farm-{farm_id}",
                farm_id=farm_id,
                name=f"Farm {farm_id}",
                grid=Grid.GRID3,
                country="BE",
                region="europe",
            )
        )

    def node(self, node_id: str, total: Resources = SHAPE, farm_id: str = "farm_1") -> HandleResult:
        return self.handle(
            RegisterNode(
                command_id=f"node-{node_id}",
                node_id=node_id,
                farm_id=farm_id,
                grid=Grid.GRID3,
                country="BE",
                region="europe",
                total=total,
                uptime_pct=Decimal("99.5"),
            )
        )

    def rfq(
        self,
        negotiation_id: str,
        *,
        replicas: int = 1,
        resources: Resources = SHAPE,
        deadline: timedelta = timedelta(minutes=10),
        invited: tuple[str, ...] = (),
    ) -> HandleResult:
        return self.handle(
            IssueRfq(
                command_id=f"rfq-{negotiation_id}",
                negotiation_id=negotiation_id,
                offtaker_id="off_1",
                workload_id=f"wl-{negotiation_id}",
                resources=resources,
                replicas=replicas,
                grids=[Grid.GRID3],
                max_price_cu_hour=usd("0.05"),
                term_hours=720,
                deadline=self.clock.now() + deadline,
                invited_farms=list(invited),
            )
        )

    def make_offer(
        self,
        negotiation_id: str,
        offer_id: str,
        node_id: str,
        *,
        farm_id: str = "farm_1",
        firm: bool = True,
        price: str = "0.02",
        expires: timedelta = timedelta(minutes=30),
        command_id: str | None = None,
    ) -> HandleResult:
        return self.handle(
            MakeOffer(
                command_id=command_id or f"offer-{offer_id}",
                negotiation_id=negotiation_id,
                offer_id=offer_id,
                farm_id=farm_id,
                node_id=node_id,
                price_hour=usd(price),
                term_hours=720,
                sla=SLA,
                firm=firm,
                expires_at=self.clock.now() + expires,
            )
        )

    def accept(
        self, negotiation_id: str, offer_id: str, *, command_id: str | None = None
    ) -> HandleResult:
        """Accept an offer; its contract's id is ``ctr(negotiation_id, offer_id)``."""
        return self.handle(
            AcceptOffer(
                command_id=command_id or f"accept-{offer_id}",
                negotiation_id=negotiation_id,
                offer_id=offer_id,
            )
        )

    def close(
        self, negotiation_id: str, outcome: Literal["awarded", "failed", "expired"] = "failed"
    ) -> HandleResult:
        return self.handle(
            CloseNegotiation(
                command_id=f"close-{negotiation_id}", negotiation_id=negotiation_id, outcome=outcome
            )
        )

    # -- what the store says -------------------------------------------------------------

    def events(self, stream: str) -> list[Event]:
        return [row.envelope().decode() for row in self.store.read_stream(stream)]

    def types(self, stream: str) -> list[str]:
        return [row.type for row in self.store.read_stream(stream)]

    def node_state(self, node_id: str) -> node.NodeState:
        return node.fold(self.events(node.node_stream(node_id)))

    def negotiation_state(self, negotiation_id: str) -> negotiation.NegotiationState:
        return negotiation.fold(self.events(negotiation.negotiation_stream(negotiation_id)))

    def node_types(self, node_id: str) -> list[str]:
        return self.types(node.node_stream(node_id))

    def negotiation_types(self, negotiation_id: str) -> list[str]:
        return self.types(negotiation.negotiation_stream(negotiation_id))

    def all_events(self) -> list[Event]:
        rows = self.store.read_all(1, self.store.current_position() + 1)
        return [row.envelope().decode() for row in rows]

    def contract_ids(self) -> list[str]:
        return [e.contract_id for e in self.all_events() if isinstance(e, ContractCreated)]
