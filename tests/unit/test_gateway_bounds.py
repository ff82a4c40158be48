"""The pure parts of the gateway's bounds: list pages and their cursors, the rates' parsing
and counting (the :mod:`limits` library over its own in-memory storage), the open-stream slots,
the settings that configure them, and the refusals the OpenAPI document declares."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, cast

import pytest
from limits.aio.storage import MemoryStorage
from pydantic import ValidationError
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway._bounds import RateLimits, StreamSlots, parse_rates
from hero.gateway._paging import (
    MAX_LIMIT,
    BadCursor,
    decode_cursor,
    encode_cursor,
    page_of,
)
from hero.gateway.app import create_app
from hero.gateway.context import GatewayContext
from hero.readmodels.ratelimits import shared_storage

IDS = [f"farm-{n:02d}" for n in range(10)]


def _pages(items: list[str], limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = page_of("farms", items, str, limit=limit, after=after)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        after = decode_cursor("farms", page.next_cursor)


@pytest.mark.parametrize("limit", [1, 3, 9, 10, 11, MAX_LIMIT])
def test_pages_cover_the_list_once_in_order(limit: int) -> None:
    pages = _pages(IDS, limit)
    assert [item for page in pages for item in page] == IDS
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit


def test_the_last_page_has_no_cursor_and_an_empty_list_one_empty_page() -> None:
    assert page_of("farms", IDS, str, limit=10, after=None).next_cursor is None
    empty = page_of("farms", [], str, limit=5, after=None)
    assert empty.items == []
    assert empty.next_cursor is None


def test_a_page_after_a_removed_id_starts_at_the_next_one() -> None:
    cursor = page_of("farms", IDS, str, limit=3, after=None).next_cursor
    assert cursor is not None
    after = decode_cursor("farms", cursor)
    shrunk = [i for i in IDS if i != after]  # the page's last document went away meanwhile
    assert page_of("farms", shrunk, str, limit=2, after=after).items == IDS[3:5]


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_page_of_refuses_a_limit_out_of_range(limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be"):
        page_of("farms", IDS, str, limit=limit, after=None)


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    cursor = encode_cursor("accounts", "farmer.farm-1.TFT")
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor("accounts", cursor) == "farmer.farm-1.TFT"


def _b64(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("cursor", "says"),
    [
        ("", "URL-safe base64"),
        ("has space", "URL-safe base64"),
        ("a" * 1201, "URL-safe base64"),
        ("!!!", "URL-safe base64"),
        ("bm90IGpzb24", "handed out"),  # "not json"
        (_b64([1, 2]), "handed out"),
        (_b64({"l": "farms"}), "handed out"),
        (_b64({"l": "farms", "a": 7}), "handed out"),
        (_b64({"l": "farms", "a": ""}), "handed out"),
        (_b64({"l": "farms", "a": "x", "more": 1}), "handed out"),
        (encode_cursor("nodes", "node-1"), "another list"),
    ],
)
def test_a_bad_cursor_is_refused_saying_why(cursor: str, says: str) -> None:
    with pytest.raises(BadCursor, match=says):
        decode_cursor("farms", cursor)


# -- rates -----------------------------------------------------------------------------------


def test_parse_rates() -> None:
    assert [str(r) for r in parse_rates("100/second;2000/minute")] == [
        "100 per 1 second",
        "2000 per 1 minute",
    ]
    assert parse_rates("off") == ()
    assert parse_rates(" OFF ") == ()
    for bad in ("", "lots", "10/fortnight"):
        with pytest.raises(ValueError):  # noqa: PT011 (the library's message)
            parse_rates(bad)


async def test_rates_refuse_past_the_limit_per_identity_with_a_wait() -> None:
    limits = RateLimits(MemoryStorage(), parse_rates("3/minute;100/hour"))
    assert [await limits.hit("key:a") for _ in range(3)] == [None, None, None]
    refused = await limits.hit("key:a")
    assert refused is not None
    assert refused.limit == "3 per 1 minute"
    assert 1 <= refused.retry_after_s <= 60
    assert await limits.hit("key:b") is None  # each identity its own budget


async def test_rates_let_requests_through_when_valkey_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)  # nothing listens
    limits = RateLimits(shared_storage(nobody, "t"), parse_rates("1/minute"))
    try:
        assert [await limits.hit("key:a") for _ in range(3)] == [None, None, None]
    finally:
        await nobody.aclose()
    assert limits.uncounted == 3
    assert "rate limits not counted" in caplog.text


def test_the_rate_setting_is_checked_where_it_enters() -> None:
    assert HeroSettings().gateway_rate == "100/second;2000/minute"
    assert HeroSettings(gateway_rate="Off").gateway_rate == "off"
    with pytest.raises(ValidationError, match="HERO_GATEWAY_RATE must read like"):
        HeroSettings(gateway_rate="100 a second")
    with pytest.raises(ValidationError):
        HeroSettings(gateway_max_streams_per_key=-1)
    assert HeroSettings().gateway_max_streams_per_key == 8


# -- open streams ------------------------------------------------------------------------------


def test_stream_slots_cap_each_key_and_come_back_once() -> None:
    slots = StreamSlots(2)
    first, second = slots.take("a"), slots.take("a")
    assert first is not None
    assert second is not None
    assert slots.take("a") is None
    assert slots.take("b") is not None  # another key has its own
    first()
    first()  # released twice: counted once
    assert slots.open("a") == 1
    assert slots.take("a") is not None
    assert slots.take("a") is None


def test_no_cap_when_zero() -> None:
    slots = StreamSlots(0)
    assert all(slots.take("a") is not None for _ in range(100))
    assert slots.open("a") == 100


# -- the OpenAPI document ----------------------------------------------------------------------


def test_openapi_declares_429_where_a_key_is_taken_and_400_on_lists(tmp_path: Path) -> None:
    context = GatewayContext(
        settings=HeroSettings(data_dir=tmp_path),
        store=cast(Any, None),  # the document is made without reading anything
        redis=Redis.from_url("redis://127.0.0.1:1"),  # never connected to
        clock=SystemClock(),
    )
    paths = create_app(context, run_projector=False).openapi()["paths"]
    answers = {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    keyed = [name for name in answers if name.split()[1].startswith(("/v1/farms", "/v1/nodes"))]
    keyed += ["GET /v1/streams/{topic}", "POST /v1/payouts", "GET /v1/accounts/{document_id}"]
    assert all("429" in answers[name] for name in keyed), keyed
    lists = ["farms", "nodes", "contracts", "negotiations", "workloads", "accounts"]
    assert all("400" in answers[f"GET /v1/{name}"] for name in lists)
    assert "400" in answers["GET /v1/streams/{topic}"]
    assert "429" not in answers["GET /health"]
