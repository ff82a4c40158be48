"""Ids the market derives from the ids people choose stay within the store's 200 characters.

An offtaker id of 185 characters used to be accepted, then every decision of its agent failed
(a command id over 200 characters). The limits of ``schemas.ids`` are what keeps each
derivation within the store's limit: checked here at the limits, over every derivation (with
the largest negotiation numbers and offer indexes an agent will reach), and over a whole
negotiation run by the real agents with ids of the longest allowed length.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from agents.farmer import offer_id_for
from agents.local import LocalMarket
from hero.domain.clock import ManualClock
from hero.domain.ledger import AccountKind, account_id, account_stream
from hero.domain.negotiation import contract_id_for, negotiation_stream
from hero.domain.node import node_stream
from hero.domain.usage import usage_stream
from hero.gateway.commands import command_id_for
from hero.gateway.context import Principal, Role
from hero.market.service import farm_stream, offtaker_stream, scaling_stream
from hero.payments.billing import billing_stream
from hero.store import MemoryEventStore
from schemas import (
    ChangeNodeStatus,
    FarmerPolicy,
    Grid,
    Mandate,
    NodeStatus,
    RegisterFarm,
    RegisterNode,
    SetFarmerPolicy,
    SetOfftakerMandate,
    WorkloadSpec,
)
from schemas.ids import (
    FARM_ID_MAX,
    ID_MAX,
    NODE_ID_MAX,
    OFFTAKER_ID_MAX,
    WORKLOAD_ID_MAX,
    FarmId,
    NodeId,
    OfftakerId,
    WorkloadId,
)
from tests.unit._gwt import SHAPE, T0, usd

#: An offtaker's RFQs for one workload are numbered; below a billion is 31 years at one RFQ a
#: second. An RFQ has at most 10,000 replicas, so at most 10,000 offers a farm.
MAX_NUMBER = 999_999_999
MAX_INDEX = 9_999
#: Holds a farmer sweeps from one node at once, and the longest hour stamps of billing.
MAX_SWEPT = 999_999
HOUR = datetime(2026, 12, 31, 23, tzinfo=UTC)
GATEWAY_COMMAND = command_id_for(Principal("0123456789abcdef", Role.ADMIN), "k" * 150, "x")

_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_REST = _FIRST + "._:@-"


def ids(max_length: int) -> st.SearchStrategy[str]:
    """Ids of the shape ``ID_PATTERN`` allows, mostly of the longest allowed length."""
    lengths = st.one_of(st.just(max_length), st.integers(1, max_length))
    return lengths.flatmap(
        lambda n: st.tuples(
            st.sampled_from(_FIRST), st.text(alphabet=_REST, min_size=n - 1, max_size=n - 1)
        ).map("".join)
    )


def derived(o: str, w: str, f: str, d: str, number: int, index: int, swept: int) -> dict[str, str]:
    """Every id the market and its agents derive from user ids, named for where it is made."""
    nego = f"{o}.{w}.{number}"  # agents/offtaker.py: the offtaker's negotiation id
    offer = offer_id_for(nego, f, index)
    contract = contract_id_for(nego, offer)
    bill = f"bill-{contract}-{HOUR:%Y%m%dT%H}"  # hero/payments/billing.py
    offtaker, farmer = f"offtaker:{o}", f"farmer:{f}"  # agents/market.py
    accept = f"{offtaker}:{nego}:accept:{offer}"  # agents/offtaker.py
    close = f"{offtaker}:{nego}:close"
    return {
        "negotiation": nego,
        "offer": offer,
        "contract": contract,
        "negotiation stream": negotiation_stream(nego),
        "node stream": node_stream(d),
        "farm stream": farm_stream(f),
        "offtaker stream": offtaker_stream(o),
        "scaling stream": scaling_stream(o, w),
        "usage stream": usage_stream(contract),
        "billing stream": billing_stream(contract),
        "offtaker account stream": account_stream(account_id(AccountKind.OFFTAKER, o)),
        "farmer account stream": account_stream(account_id(AccountKind.FARMER, f)),
        # agents/offtaker.py's commands, and what the market service derives from them
        "rfq command": f"{offtaker}:{nego}:rfq",
        "accept command": accept,
        "accept voided": f"{accept}:void",
        "accept's hold released": f"{accept}:release",
        "counter command": f"{offtaker}:{nego}:counter:{offer}",
        "close command": close,
        "close's hold released": f"{close}:{offer}",
        "cancel command": f"{offtaker}:{contract}:cancel",
        "award": f"{nego}:award",
        # agents/farmer.py's commands
        "offer command": f"{farmer}:{nego}:offer:{index}",
        "offer undone": f"{farmer}:{nego}:offer:{index}:undo",
        "decline command": f"{farmer}:{nego}:decline",
        "counter answer": f"{farmer}:{offer}:counter",
        "sweep command": f"{farmer}:expire:{d}:{swept}:{offer}",
        # agents/autoscaler.py
        "scale decision": f"autoscaler:{o}:{w}:{HOUR:%Y%m%dT%H%M%S.%fZ}",
        # hero/payments/billing.py and streams/usage.py
        "bill's largest transfer": f"{bill}-threefold",
        "suspension": f"suspend-{contract}-{HOUR:%Y%m%dT%H}",
        "resumption": f"resume-{contract}-{HOUR:%Y%m%dT%H%M%S}",
        "grace cancel": f"grace-cancel-{contract}",
        "usage fact": f"usage-{contract}-{HOUR:%Y%m%dT%H}",
        "balance low": f"balance-low-{account_id(AccountKind.OFFTAKER, o)}-{HOUR:%Y%m%dT%H}",
        # hero/gateway/commands.py: a client's Idempotency-Key (at most 150) under its key id,
        # and the longest suffix the market service adds to a command id
        "gateway command released": f"{GATEWAY_COMMAND}:release",
    }


@given(
    ids(OFFTAKER_ID_MAX),
    ids(WORKLOAD_ID_MAX),
    ids(FARM_ID_MAX),
    ids(NODE_ID_MAX),
    st.integers(1, MAX_NUMBER),
    st.integers(0, MAX_INDEX),
    st.integers(1, MAX_SWEPT),
)
def test_every_derived_id_of_allowed_ids_fits_the_store(
    o: str, w: str, f: str, d: str, number: int, index: int, swept: int
) -> None:
    for name, value in derived(o, w, f, d, number, index, swept).items():
        assert len(value) <= ID_MAX, (name, len(value), value)


def test_the_limits_are_as_long_as_the_derivations_allow() -> None:
    """Not needlessly short: one character more on the offtaker id and the longest id no
    longer fits."""
    longest = {"o": "o" * OFFTAKER_ID_MAX, "w": "w" * WORKLOAD_ID_MAX, "f": "f" * FARM_ID_MAX}
    ids_at_limits = derived(**longest, d="d" * NODE_ID_MAX, number=MAX_NUMBER, index=MAX_INDEX,
                            swept=MAX_SWEPT)  # fmt: skip
    assert max(len(v) for v in ids_at_limits.values()) > ID_MAX - 3
    over = derived(**{**longest, "o": "o" * (OFFTAKER_ID_MAX + 1)}, d="d", number=MAX_NUMBER,
                   index=MAX_INDEX, swept=1)  # fmt: skip
    assert max(len(v) for v in over.values()) > ID_MAX


@pytest.mark.parametrize(
    ("kind", "limit"),
    [(OfftakerId, OFFTAKER_ID_MAX), (WorkloadId, WORKLOAD_ID_MAX), (FarmId, FARM_ID_MAX),
     (NodeId, NODE_ID_MAX)],
)  # fmt: skip
def test_a_user_id_one_longer_than_its_limit_is_refused(kind: object, limit: int) -> None:
    adapter: TypeAdapter[str] = TypeAdapter(kind)
    assert adapter.validate_python("a" * limit) == "a" * limit
    with pytest.raises(ValidationError, match=f"at most {limit} characters"):
        adapter.validate_python("a" * (limit + 1))


# -- the real agents, with ids of the longest allowed length ------------------------------------

OFFTAKER, WORKLOAD, FARM = "o" * OFFTAKER_ID_MAX, "w" * WORKLOAD_ID_MAX, "f" * FARM_ID_MAX
N1, N2 = "a" * (NODE_ID_MAX - 1), "b" * (NODE_ID_MAX - 1)
PLACE = {"grid": Grid.GRID3, "country": "BE", "region": "europe"}


def test_a_whole_negotiation_with_the_longest_ids_runs_without_a_refused_id() -> None:
    """Offers, a counter, an acceptance the market voids (its hold released), the replica
    placed elsewhere, then a scale-down that cancels it: every command the agents send and
    every id the market derives is accepted by the store."""
    clock = ManualClock(T0)
    store = MemoryEventStore(clock)
    market = LocalMarket(store, clock)
    handle = market.service.handle
    handle(RegisterFarm(command_id="farm", farm_id=FARM, name="far", **PLACE))
    for node in (N1, N2):
        handle(RegisterNode(command_id=f"n-{node[0]}", node_id=node, farm_id=FARM,
                            total=SHAPE.times(4), **PLACE))  # fmt: skip
    handle(SetFarmerPolicy(command_id="policy", farm_id=FARM,
                           policy=FarmerPolicy(price_cu_hour=usd("0.01"))))  # fmt: skip

    def mandate(replicas: int) -> Mandate:
        workload = WorkloadSpec(workload_id=WORKLOAD, resources=SHAPE, replicas=replicas)
        return Mandate(workloads=[workload], budget_month=usd("1000"),
                       max_price_cu_hour=usd("0.05"), counter_discount=Decimal("0.1"),
                       offer_window_s=Decimal(2))  # fmt: skip

    handle(SetOfftakerMandate(command_id="m1", offtaker_id=OFFTAKER, mandate=mandate(1)))
    while not (made := [r for r in store.read_all(1, 10_000) if r.type == "OfferMade"]):
        assert market.step() or market.catch_up(), "no offer was made"
    # The node of the offer goes down before the accept: the market voids that acceptance.
    down = str(made[0].envelope().payload["node_id"])
    handle(ChangeNodeStatus(command_id="down", node_id=down, status=NodeStatus.DOWN))
    end = clock.now() + timedelta(seconds=30)
    while clock.now() < end:
        market.run_until_quiet()
        clock.advance(timedelta(seconds=0.5))
    handle(SetOfftakerMandate(command_id="m0", offtaker_id=OFFTAKER, mandate=mandate(0)))
    market.run_until_quiet()

    rows = store.read_all(1, 10_000)
    types = [r.type for r in rows]
    assert {"CounterOffered", "CounterRejected", "ContractCreated", "ContractCancelled",
            "HoldReleased"} <= set(types), types  # fmt: skip
    assert [reason for _, _, reason in market.rejected] == ["hold_ended"]  # the voided accept
    longest = max(len(r.envelope().causation_id or "") for r in rows)
    assert longest > 170, "the scenario did not reach the long derived ids"
