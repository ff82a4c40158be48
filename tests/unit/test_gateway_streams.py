"""The pure rules of the gateway's streams (scopes, filters, start/resume, SSE framing) and the
broadcaster's hand-over from history to live, over the in-memory event store."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from hero.gateway._stream_rules import (
    FULL_VIEW,
    StartSpec,
    StreamFilter,
    concerns,
    in_scope,
    parse_last_event_id,
    parse_start,
    parse_types,
    redacted_for_developer,
    resume_after,
    sse_comment,
    sse_frame,
    topic_refusal,
    visibility_class,
    visible,
)
from hero.gateway.broadcast import Broadcaster, SlowConsumer, broadcasting
from hero.gateway.context import Principal, Role
from hero.gateway.redaction import Pseudonyms
from hero.store import ANY_VERSION, MemoryEventStore, NewEvent
from schemas import FarmRegistered, NodeStatus, NodeStatusChanged
from schemas.resources import Grid

ADMIN = Principal("a", Role.ADMIN)
DEV = Principal("d", Role.DEVELOPER)
FARMER = Principal("f", Role.FARMER, frozenset({"farm-a", "farm-b"}))
OFFTAKER = Principal("o", Role.OFFTAKER, frozenset({"acme"}))
TOPIC_RESERVATIONS = "hero.reservations"
MASKS = Pseudonyms(b"test-secret")


def envelope(type_: str = "OfferMade", **payload: Any) -> dict[str, Any]:
    return {"type": type_, "position": 7, "stream": "s", "payload": payload}


# -- whom an event concerns, and who sees it -------------------------------------------------


def test_concerns_reads_ids_lists_and_account_owners() -> None:
    about = concerns(
        {
            "farm_id": "farm-a",
            "invited_farms": ["farm-x", "farm-y"],
            "node_id": "n1",
            "to_node_id": "n2",
            "offtaker_id": "acme",
            "grids": ["grid3", "grid4"],
            "debit_account": "offtaker.beta.TFT",
            "credit_account": "farmer.farm-z.TFT",
        }
    )
    assert about.farms == {"farm-a", "farm-x", "farm-y", "farm-z"}
    assert about.nodes == {"n1", "n2"}
    assert about.offtakers == {"acme", "beta"}
    assert about.grids == {"grid3", "grid4"}
    assert concerns({"farm_id": 3, "invited_farms": "nope", "account_id": "pool.x"}).farms == set()


def test_scope_per_role() -> None:
    mine = envelope(farm_id="farm-a", offtaker_id="acme")
    theirs = envelope(farm_id="farm-c", offtaker_id="other")
    payout = envelope("TransferPosted", debit_account="farmer.farm-b.TFT", credit_account="x.y.Z")
    no_ids = envelope("HoldExpired", node_id="n1", hold_id="h")
    assert in_scope(ADMIN, theirs)
    assert in_scope(DEV, theirs)
    assert in_scope(FARMER, mine)
    assert in_scope(FARMER, payout)
    assert not in_scope(FARMER, theirs)
    assert not in_scope(FARMER, no_ids)
    assert in_scope(OFFTAKER, mine)
    assert not in_scope(OFFTAKER, theirs)
    assert not in_scope(FARMER, {"type": "X", "payload": "not a dict"})


def test_visible_redacts_private_fields_for_developers_only() -> None:
    event = envelope(
        "TransferPosted",
        debit_account="pool.farm-a.TFT",
        credit_account="farmer.farm-a.TFT",
        amount={"amount": "1", "currency": "TFT"},
        nested={"balance": "9", "kept": 1},
    )
    shown = visible(DEV, event, MASKS)
    assert shown is not None
    assert shown["payload"] == {"amount": {"amount": "1", "currency": "TFT"}, "nested": {"kept": 1}}
    assert shown["position"] == 7
    assert visible(DEV, {**event, "actor": "gateway:k-123"}, MASKS)["actor"] == "gateway"  # type: ignore[index]
    assert event["payload"]["nested"]["balance"] == "9"  # the input is not changed
    assert visible(ADMIN, event, MASKS) == event
    assert visible(FARMER, event, MASKS)["payload"]["nested"] == {"kept": 1}  # type: ignore[index]
    assert visible(FARMER, envelope(farm_id="farm-c"), MASKS) is None
    # an offtaker's money is its own: no transfer in or out of its account reaches a developer
    paid = envelope("TransferPosted", debit_account="offtaker.acme.TFT", credit_account="x.y.TFT")
    assert visible(DEV, paid, MASKS) is None
    assert visible(OFFTAKER, paid, MASKS) == paid


def test_topic_refusals() -> None:
    assert topic_refusal(ADMIN, "hero.dlq") is None
    assert topic_refusal(FARMER, "hero.commands") is not None
    assert topic_refusal(FARMER, "hero.policies") is None
    assert topic_refusal(DEV, "hero.reservations") is None
    refusal = topic_refusal(DEV, "hero.policies")
    assert refusal is not None
    assert "hero.reservations" in refusal


# -- filters ---------------------------------------------------------------------------------


def test_filters_are_anded_and_types_ored() -> None:
    offer = envelope("OfferMade", farm_id="farm-a", node_id="n1", grid="grid3")
    rfq = envelope("RfqIssued", offtaker_id="acme", grids=["grid4"], invited_farms=["farm-a"])
    assert StreamFilter().matches(offer)
    assert StreamFilter(types=frozenset({"OfferMade", "RfqIssued"})).matches(rfq)
    assert not StreamFilter(types=frozenset({"OfferMade"})).matches(rfq)
    assert StreamFilter(farm="farm-a").matches(rfq)
    assert StreamFilter(farm="farm-a", node="n1", grid="grid3").matches(offer)
    assert not StreamFilter(farm="farm-a", node="n2").matches(offer)
    assert StreamFilter(offtaker="acme", grid="grid4").matches(rfq)
    assert not StreamFilter(grid="grid3").matches(rfq)
    assert not StreamFilter(farm="farm-a").matches({"type": "X"})


def test_parse_types() -> None:
    known = ["OfferMade", "RfqIssued"]
    assert parse_types(None, known) == frozenset()
    assert parse_types(" ", known) == frozenset()
    assert parse_types("OfferMade, RfqIssued,", known) == {"OfferMade", "RfqIssued"}
    with pytest.raises(ValueError, match="Nope"):
        parse_types("OfferMade,Nope", known)


# -- where a subscription starts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "spec"),
    [
        (None, StartSpec()),
        ("earliest", StartSpec()),
        ("latest", StartSpec(latest=True)),
        ("1", StartSpec(position=0)),
        ("42", StartSpec(position=41)),
    ],
)
def test_parse_start(raw: str | None, spec: StartSpec) -> None:
    assert parse_start(raw) == spec


@pytest.mark.parametrize("raw", ["0", "-3", "soon", "1.5", ""])
def test_parse_start_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match="start must be"):
        parse_start(raw)


def test_last_event_id_wins_and_resumes_strictly_after() -> None:
    assert parse_last_event_id(None) is None
    assert parse_last_event_id(" ") is None
    assert parse_last_event_id("17") == 17
    with pytest.raises(ValueError, match="Last-Event-ID"):
        parse_last_event_id("abc")
    assert resume_after(StartSpec(latest=True), 17, head=90) == 17
    assert resume_after(StartSpec(position=4), 0, head=90) == 0
    assert resume_after(StartSpec(latest=True), None, head=90) == 90
    assert resume_after(StartSpec(position=4), None, head=90) == 4
    assert resume_after(StartSpec(), None, head=90) == 0


# -- framing ---------------------------------------------------------------------------------


def test_sse_frame() -> None:
    frame = sse_frame(12, "OfferMade", {"text": "two\nlines", "n": 1, "name": "café"})
    assert (
        frame
        == (
            'id: 12\nevent: OfferMade\ndata: {"text":"two\\nlines","n":1,"name":"café"}\n\n'
        ).encode()
    )
    assert frame.count(b"\n\n") == 1  # one message: JSON never holds a raw newline


def test_sse_comment() -> None:
    assert sse_comment("heartbeat") == b": heartbeat\n\n"
    assert sse_comment("a\nb") == b": a\n: b\n\n"


# -- the broadcaster (in-memory store, real threads) -----------------------------------------


def _append(store: MemoryEventStore, count: int, start: int = 0) -> list[int]:
    events = [
        NewEvent.of(
            FarmRegistered(
                farm_id=f"farm-{i}", name="f", grid=Grid.GRID3, country="BE", region="eu"
            ),
            actor="test",
            occurred_at=datetime.now(UTC),
        )
        for i in range(start, start + count)
    ]
    result = store.append(f"s-{start}", ANY_VERSION, events, command_id=f"c-{start}-{count}")
    return list(range(result.first_position, result.last_position + 1))


async def _collect(
    broadcaster: Broadcaster, after: int, count: int, topic: str = "hero.reservations"
) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(10):
        async for item in broadcaster.subscribe(topic, after):
            got.append(item.position)
            if len(got) == count:
                break
    return got


async def test_history_then_live_without_gap_or_duplicate_while_writing() -> None:
    store = MemoryEventStore()
    expected = _append(store, 50)
    async with broadcasting(store, poll_interval_s=0.01, read_batch=7, fanout_chunk=3) as b:
        stop = threading.Event()

        def writer() -> None:  # appends while subscribers catch up and switch over
            start = 1000
            while not stop.is_set() and start < 1000 + 20 * 10:
                expected.extend(_append(store, 10, start))
                start += 10

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            results = await asyncio.gather(*(_collect(b, after, 250 - after) for after in (0, 5)))
        finally:
            stop.set()
            thread.join()
        for after, got in zip((0, 5), results, strict=True):
            assert got == expected[after:250]
        assert b.stats.subscribed_total == 2
        assert b.stats.subscribers == 0
        assert b.stats.live == 0


async def test_other_topics_are_skipped() -> None:
    store = MemoryEventStore()
    first = _append(store, 3)
    status = NewEvent.of(
        NodeStatusChanged(node_id="n", status=NodeStatus.DOWN, reason="test"),
        actor="t",
        occurred_at=datetime.now(UTC),
    )
    store.append("node-n", ANY_VERSION, [status], command_id="c-status")
    later = _append(store, 2, start=10)
    async with broadcasting(store, poll_interval_s=0.01) as b:
        assert await _collect(b, 0, 5) == first + later
        assert await _collect(b, 0, 1, topic="hero.utilization") == [4]


async def test_a_live_subscriber_that_falls_behind_is_closed_and_its_queue_freed() -> None:
    store = MemoryEventStore()
    async with broadcasting(store, poll_interval_s=0.01, queue_limit=4, fanout_chunk=50) as b:
        rows = b.subscribe("hero.reservations", 0, on_live=lambda: live.set())
        live = asyncio.Event()
        first = asyncio.ensure_future(anext(rows))
        await asyncio.wait_for(live.wait(), 5)
        _append(store, 20)  # one chunk of 20 into a queue of 4
        with pytest.raises(SlowConsumer) as slow:
            async with asyncio.timeout(5):
                await first
        assert slow.value.limit == 4
        assert slow.value.position == 5  # the first row that did not fit
        assert "slow consumer: buffer limit 4 reached at position 5" in str(slow.value)
        assert b.stats.slow_consumer_drops == 1
        assert b.stats.max_queue_depth == 4
        assert b.stats.live == 0


# -- the shared catch-up cache ---------------------------------------------------------------


async def test_concurrent_catch_ups_share_one_read_and_the_same_items() -> None:
    store = MemoryEventStore()
    expected = _append(store, 40)
    async with broadcasting(store, poll_interval_s=0.01, read_batch=10) as b:
        seen: list[list[Any]] = [[], [], []]

        async def collect(index: int, after: int) -> None:
            async with asyncio.timeout(10):
                async for item in b.subscribe("hero.reservations", after):
                    seen[index].append(item)
                    if item.position == expected[-1]:
                        return

        await asyncio.gather(collect(0, 0), collect(1, 0), collect(2, 13))
        assert [i.position for i in seen[0]] == expected
        assert [i.position for i in seen[2]] == expected[13:]
        # the same objects, not copies: parsed once for everyone
        assert all(a is c for a, c in zip(seen[0][13:], seen[2], strict=True))
        assert all(a is c for a, c in zip(seen[0], seen[1], strict=True))
        assert b.stats.store_reads == 4  # blocks 1-10, 11-20, 21-30, 31-40: once each
        assert b.stats.cache_hits == 7  # 11 blocks asked for in all, 4 read
        # a later subscriber over the same range reads from the cache
        reads = b.stats.store_reads
        assert await _collect(b, 0, 40) == expected
        assert b.stats.store_reads == reads


async def test_the_cache_is_bounded_in_rows() -> None:
    store = MemoryEventStore()
    expected = _append(store, 95)
    async with broadcasting(store, poll_interval_s=0.01, read_batch=10, cache_rows=25) as b:
        assert await _collect(b, 0, 95) == expected
        assert 0 < b.stats.cached_rows <= 25
        assert sum(len(block.items) for block in b._cache.values()) == b.stats.cached_rows
    async with broadcasting(store, poll_interval_s=0.01, read_batch=10, cache_rows=0) as b:
        assert await _collect(b, 0, 95) == expected
        assert b.stats.cached_rows == 0
    with pytest.raises(ValueError, match="cache_rows"):
        Broadcaster(store, cache_rows=-1)


async def test_a_partial_head_block_is_read_again_once_the_log_grows() -> None:
    store = MemoryEventStore()
    expected = _append(store, 5)
    async with broadcasting(store, poll_interval_s=0.01, read_batch=10) as b:
        assert await _collect(b, 0, 5) == expected  # block 1-10 cached up to 5
        expected += _append(store, 4, start=100)
        assert await _collect(b, 0, 9) == expected  # the cached block covers only 1-5
        assert await _collect(b, 3, 6) == expected[3:]


async def test_batches_hold_what_is_ready() -> None:
    store = MemoryEventStore()
    expected = _append(store, 12)
    async with broadcasting(store, poll_interval_s=0.01, read_batch=5) as b:
        sizes: list[int] = []
        got: list[int] = []
        async with asyncio.timeout(10):
            async for batch in b.subscribe_batches("hero.reservations", 0):
                sizes.append(len(batch))
                got.extend(item.position for item in batch)
                if len(got) == 12:
                    break
        assert got == expected
        assert sizes == [5, 5, 2]  # the aligned blocks 1-5, 6-10, 11-15 (read up to 12)


def test_redacted_for_developer_is_what_visible_shows_and_leaves_the_envelope() -> None:
    event = {
        **envelope(farm_id="farm-a", debit_account="offtaker.acme.TFT", amount="1"),
        "actor": "gateway:k-1",
    }
    before = repr(event)
    assert redacted_for_developer(event, MASKS) == visible(DEV, event, MASKS)
    assert repr(event) == before
    assert visibility_class(DEV) == "developer"
    assert visibility_class(ADMIN) == FULL_VIEW
    # a farmer's or offtaker's view depends on whose moves are its own: one class per tenant set
    assert visibility_class(FARMER) == "farmer:farm-a,farm-b"
    assert visibility_class(OFFTAKER) == "offtaker:acme"


def test_a_developer_frame_made_before_an_offtaker_was_learned_is_not_reused() -> None:
    from hero.gateway._subscription import Renderer
    from hero.gateway.broadcast import LogItem
    from hero.gateway.offtakers import OfftakerDirectory

    directory = OfftakerDirectory(MemoryEventStore(), Pseudonyms(b"s"))
    expired = envelope("HoldExpired", hold_id="acme.w.1")
    item = LogItem(1, TOPIC_RESERVATIONS, "HoldExpired", expired)
    renderer = Renderer(DEV, directory)
    assert b"acme.w.1" in renderer.sse(item)  # not known as an offtaker yet
    directory.pseudonyms.learn(["acme"])
    frame = renderer.sse(item)
    assert b"acme" not in frame
    assert directory.pseudonyms.of("acme").encode() in frame
    assert renderer.sse(item) is frame  # rendered once per generation
    developer_keys = [k for k in item.memo if k != "developer" and "developer" in str(k)]
    assert len(developer_keys) == 2  # this generation's view and SSE frame; the old ones dropped
