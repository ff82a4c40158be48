"""The SDK's pure parts (SSE parsing, resume bookkeeping, error mapping) and what its command
helpers put on the wire (captured by httpx's own in-process transport)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hero.cli import app, tailing
from hero.sdk import Client, Cursor, GatewayError, RateLimited
from hero.sdk._sse import SseMessage, SseParser
from hero.sdk.client import error_of
from schemas import FarmerPolicy, NodeStatus


def feed(parser: SseParser, text: str) -> list[SseMessage]:
    return [m for line in text.split("\n") if (m := parser.feed(line)) is not None]


def test_sse_parser_reads_events_markers_and_comments() -> None:
    parser = SseParser()
    text = (
        ": hero stream hero.reservations\nid: 4\n\n"
        'id: 5\nevent: OfferMade\ndata: {"a":1}\n\n'
        ": heartbeat\n\n"
        "event: close\ndata: line one\ndata:line two\n\n"
        "retry: 10\nunknown: x\n\n"
    )
    messages = feed(parser, text)
    assert messages == [
        SseMessage(event="message", data="", id="4"),
        SseMessage(event="OfferMade", data='{"a":1}', id="5"),
        SseMessage(event="close", data="line one\nline two", id="5"),
    ]
    assert parser.comments == 2
    assert parser.last_id == "5"


def test_sse_parser_bounds_a_message() -> None:
    parser = SseParser(max_data=10)
    parser.feed("data: 12345")
    with pytest.raises(ValueError, match="passed 10"):
        parser.feed("data: 67890")


def test_cursor_drops_replays_and_names_the_resume_point() -> None:
    cursor = Cursor()
    assert cursor.headers() == {}
    assert cursor.observe("0") == 0  # the position marker of a stream from the start
    assert cursor.headers() == {"Last-Event-ID": "0"}
    assert cursor.observe("3") == 3
    assert cursor.observe("3") is None
    assert cursor.observe("2") is None
    assert cursor.observe(None) is None
    assert cursor.observe("x") is None
    assert cursor.observe("9") == 9
    assert cursor.headers() == {"Last-Event-ID": "9"}
    assert Cursor(12).observe("12") is None


def response(status: int, body: Any) -> httpx.Response:
    request = httpx.Request("GET", "http://gateway/x")
    if isinstance(body, str):
        return httpx.Response(status, text=body, request=request)
    return httpx.Response(status, json=body, request=request)


def test_error_of_reads_the_gateway_refusals() -> None:
    refused = error_of(response(403, {"detail": {"error": "not_your_farm", "message": "no"}}))
    assert (refused.status, refused.reason, refused.message) == (403, "not_your_farm", "no")
    fields = error_of(
        response(422, {"detail": [{"loc": ["body", "policy", "mode"], "msg": "bad mode"}]})
    )
    assert fields.reason == "invalid_request"
    assert "body.policy.mode: bad mode" in fields.message
    assert error_of(response(502, "<html>")).reason == "http_error"
    assert str(refused) == "403 not_your_farm: no"


class Recorder:
    def __init__(self, status: int = 200, body: Any = None):
        self.requests: list[httpx.Request] = []
        self.status, self.body = status, body if body is not None else {"ok": True}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json=self.body)


async def test_command_helpers_put_the_gateway_routes_on_the_wire() -> None:
    recorder = Recorder()
    async with Client("http://gateway/", "sekret", transport=httpx.MockTransport(recorder)) as c:
        await c.set_policy("farm-a", {"mode": "manual"}, node_id="n1", source_text="be cheap")
        await c.set_mandate("acme", {"budget": "1"}, idempotency_key="m-1")
        await c.approve_offer("nego-1", "offer-1")
        await c.reject_offer("nego-1", "offer-2", reason="too cheap")
        await c.reject_offer("nego-1", "offer-3")
        await c.set_node_status("n1", NodeStatus.DOWN, "maintenance")
    sent = [
        (r.method, r.url.path, json.loads(r.content) if r.content else None)
        for r in recorder.requests
    ]
    assert sent == [
        (
            "PUT",
            "/v1/farms/farm-a/policy",
            {"policy": {"mode": "manual"}, "node_id": "n1", "source_text": "be cheap"},
        ),
        ("PUT", "/v1/offtakers/acme/mandate", {"mandate": {"budget": "1"}}),
        ("POST", "/v1/negotiations/nego-1/offers/offer-1/approve", None),
        ("POST", "/v1/negotiations/nego-1/offers/offer-2/reject", {"reason": "too cheap"}),
        ("POST", "/v1/negotiations/nego-1/offers/offer-3/reject", None),
        ("PUT", "/v1/nodes/n1/status", {"status": "down", "reason": "maintenance"}),
    ]
    assert all(r.headers["authorization"] == "Bearer sekret" for r in recorder.requests)
    assert recorder.requests[1].headers["idempotency-key"] == "m-1"


async def test_a_pydantic_policy_is_sent_as_json() -> None:
    recorder = Recorder()
    policy = FarmerPolicy(markup=Decimal("1.2"))
    async with Client("http://gateway", "k", transport=httpx.MockTransport(recorder)) as client:
        await client.set_policy("farm-a", policy)
    body = json.loads(recorder.requests[0].content)
    assert body == {"policy": json.loads(policy.model_dump_json())}
    assert not any(isinstance(v, Decimal) for v in body["policy"].values())


async def test_a_refused_command_raises_with_status_and_reason() -> None:
    recorder = Recorder(403, {"detail": {"error": "not_your_farm", "message": "farm-b"}})
    async with Client("http://gateway", "k", transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(GatewayError) as refused:
            await client.approve_offer("n", "o")
    assert refused.value.status == 403
    assert refused.value.reason == "not_your_farm"


async def test_subscribe_refused_is_not_retried() -> None:
    recorder = Recorder(404, {"detail": {"error": "unknown_topic", "message": "known: a, b"}})
    async with Client("http://gateway", "k", transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(GatewayError) as refused:
            async for _ in client.subscribe("hero.nothing"):
                pass
    assert refused.value.status == 404
    assert len(recorder.requests) == 1
    assert recorder.requests[0].headers["accept"] == "text/event-stream"


# -- hero tail --via gateway -----------------------------------------------------------------


def test_tail_via_gateway_needs_a_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["tail", "hero.reservations", "--via", "gateway", "--data-dir", str(tmp_path)],
        env={"HERO_API_KEY": ""},
    )
    assert result.exit_code == 2
    assert "needs an API key" in result.output


def test_tail_via_gateway_without_a_running_stack(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["tail", "hero.reservations", "--via", "gateway", "--key", "k"],
        env={"HERO_DATA_DIR": str(tmp_path / "none")},
    )
    assert result.exit_code == 1
    assert "no stack running" in result.output


def test_tail_via_gateway_without_a_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class StackWithoutGateway:  # a stack from before the gateway was wired in
        def __init__(self, settings: object) -> None:
            pass

        def endpoints(self) -> object:
            return SimpleNamespace(kafka_bootstrap="127.0.0.1:1")

    monkeypatch.setattr(tailing, "LocalStack", StackWithoutGateway)
    result = CliRunner().invoke(
        app, ["tail", "hero.reservations", "--via", "gateway", "--key", "k"]
    )
    assert result.exit_code == 1
    assert "no gateway" in result.output


def test_tail_types_needs_the_gateway() -> None:
    result = CliRunner().invoke(app, ["tail", "hero.reservations", "--types", "OfferMade"])
    assert result.exit_code == 2
    assert "--via gateway" in result.output


# -- lists and rates ---------------------------------------------------------------------------


class Pages:
    """A gateway's list answers, page by page, and the requests that asked for them."""

    def __init__(self, pages: list[list[str]]):
        self.pages = pages
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        cursor = request.url.params.get("cursor")
        index = int(cursor[1:]) if cursor else 0
        more = index + 1 < len(self.pages)
        body = {
            "position": 9,
            "count": len(self.pages[index]),
            "items": [{"id": i} for i in self.pages[index]],
            "next_cursor": f"c{index + 1}" if more else None,
        }
        return httpx.Response(200, json=body)


async def test_documents_follow_the_cursors_to_the_last_page() -> None:
    pages = Pages([["a", "b"], ["c", "d"], ["e"]])
    async with Client("http://gateway", "k", transport=httpx.MockTransport(pages)) as client:
        ids = [d["id"] async for d in client.documents("farms", page_size=2, grid="grid4")]
    assert ids == ["a", "b", "c", "d", "e"]
    sent = [dict(r.url.params) for r in pages.requests]
    assert sent == [
        {"grid": "grid4", "limit": "2"},
        {"grid": "grid4", "limit": "2", "cursor": "c1"},
        {"grid": "grid4", "limit": "2", "cursor": "c2"},
    ]
    assert all(r.url.path == "/v1/farms" for r in pages.requests)


async def test_a_429_raises_rate_limited_with_the_wait() -> None:
    detail = {"error": "rate_limited", "message": "more than 100 per 1 second requests"}
    recorder = Recorder(429, {"detail": detail})

    def with_header(request: httpx.Request) -> httpx.Response:
        answer = recorder(request)
        answer.headers["Retry-After"] = "7"
        return answer

    async with Client("http://gateway", "k", transport=httpx.MockTransport(with_header)) as c:
        with pytest.raises(RateLimited) as limited:
            await c.document("farms", "farm-1")
    assert limited.value.status == 429
    assert limited.value.reason == "rate_limited"
    assert limited.value.retry_after_s == 7
    assert isinstance(limited.value, GatewayError)


async def test_a_revoked_keys_stream_raises_instead_of_reconnecting() -> None:
    frame = {"error": "key_revoked", "message": "API key abc was revoked at T"}
    body = f": hero stream t\nid: 3\n\nevent: error\ndata: {json.dumps(frame)}\n\n"
    calls: list[httpx.Request] = []

    def stream(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async with Client("http://gateway", "k", transport=httpx.MockTransport(stream)) as client:
        with pytest.raises(GatewayError) as ended:
            async for _ in client.subscribe("hero.reservations"):
                pass
    assert ended.value.status == 401
    assert ended.value.reason == "key_revoked"
    assert len(calls) == 1
