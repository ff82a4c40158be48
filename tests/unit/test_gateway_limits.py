"""The request-body bound of the gateway (hero.gateway.limits), on a bare Starlette app."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hero.gateway.limits import BodyLimit

seen: list[int] = []


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    seen.append(len(body))
    return JSONResponse({"size": len(body)})


def _client() -> TestClient:
    app = Starlette(routes=[Route("/", echo, methods=["POST", "GET"])])
    app.add_middleware(BodyLimit, max_bytes=100)
    return TestClient(app)


def test_bodies_up_to_the_bound_pass_whole() -> None:
    with _client() as client:
        assert client.post("/", content=b"x" * 100).json() == {"size": 100}
        assert client.get("/").json() == {"size": 0}


def test_a_declared_length_over_the_bound_is_413_before_the_app_runs() -> None:
    seen.clear()
    with _client() as client:
        answer = client.post("/", content=b"x" * 101)
    assert answer.status_code == 413
    assert answer.json()["detail"]["error"] == "body_too_large"
    assert seen == []


def test_a_chunked_body_is_cut_off_at_the_bound() -> None:
    seen.clear()

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 30

    with _client() as client:
        answer = client.post("/", content=chunks())
    assert answer.status_code == 413
    assert seen == []
