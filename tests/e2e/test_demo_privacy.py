"""Issue 13, item 2: after ``hero demo``, nothing a developer key receives names an offtaker.

The demo runs with ``--keep``; a developer key made with ``hero keys create`` then reads every
topic over SSE (raw bytes), over the WebSocket (raw text) and through the SDK, and every REST
list (and every listed document by the id it was shown). The offtaker ids are collected from
the store; each is searched for, case-insensitively, in everything received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hero.gateway.offtakers import named_in
from hero.sdk import Client
from hero.store import open_store
from schemas import Topic
from tests.e2e._cli import hero, hero_json, store_url

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DEVELOPER_TOPICS = (Topic.RESERVATIONS.value, Topic.UTILIZATION.value, Topic.PAYMENTS.value)
#: What a developer key is not sent at all (the README's gateway section): an offtaker's money.
NOT_SENT = {"FiatPaymentReceived", "QuoteIssued", "QuoteRefused", "FiatConverted", "BalanceLow"}
TIMEOUT_S = 60.0


@dataclass
class Demo:
    url: str
    key: str
    offtakers: set[str]
    expected: dict[str, list[int]]
    """Per developer topic, the positions a developer is sent."""
    received: dict[str, int] = field(default_factory=dict)


def _sent_to_developers(envelope: dict[str, Any]) -> bool:
    if envelope["type"] in NOT_SENT:
        return False
    if envelope["type"] == "TransferPosted":
        accounts = (envelope["payload"]["debit_account"], envelope["payload"]["credit_account"])
        return not any(a.startswith("offtaker.") for a in accounts)
    return True


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("privacy") / "demo"
    try:
        ran = hero("demo", "--keep", data_dir=data, timeout=300)
        assert ran.returncode == 0, ran.stderr + ran.stdout
        made = hero_json("keys", "create", "--role", "developer", data_dir=data)
        gateway = next(c for c in hero_json("status", data_dir=data) if c["name"] == "gateway")
        yield Demo(f"http://{gateway['address']}", made["key"], *_from_store(data))
    finally:
        hero("down", data_dir=data, timeout=120)


def _from_store(data: Path) -> tuple[set[str], dict[str, list[int]]]:
    store = open_store(store_url(data))
    try:
        offtakers: set[str] = set()
        expected: dict[str, list[int]] = {topic: [] for topic in DEVELOPER_TOPICS}
        position = 0
        while rows := store.read_all(position + 1, 1000):
            for row in rows:
                envelope = json.loads(row.envelope_json)
                offtakers |= named_in(envelope)
                if row.topic in expected and _sent_to_developers(envelope):
                    expected[row.topic].append(row.position)
            position = rows[-1].position
    finally:
        store.close()
    assert len(offtakers) >= 4, offtakers  # the demo's four, at least
    return offtakers, expected


def _hits(demo: Demo, raw: str | bytes) -> list[str]:
    text = (raw.decode() if isinstance(raw, bytes) else raw).lower()
    return [o for o in demo.offtakers if o.lower() in text]


async def _sse(demo: Demo, topic: str) -> tuple[bytes, list[int]]:
    """The topic's raw SSE bytes up to the last event a developer is sent, and their ids."""
    wanted = demo.expected[topic]
    raw, ids = b"", []
    headers = {"Authorization": f"Bearer {demo.key}"}
    async with (
        httpx.AsyncClient(base_url=demo.url, timeout=TIMEOUT_S) as http,
        http.stream("GET", f"/v1/streams/{topic}", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        async with asyncio.timeout(TIMEOUT_S):
            async for line in response.aiter_lines():
                raw += line.encode() + b"\n"
                if line.startswith("id: ") and line != "id: 0":
                    ids.append(int(line[4:]))
                    if ids[-1] >= wanted[-1]:
                        break
    return raw, ids


async def _ws(demo: Demo, topic: str) -> list[str]:
    websockets = pytest.importorskip("websockets.asyncio.client")
    url = demo.url.replace("http://", "ws://") + f"/v1/streams/{topic}/ws?start=earliest"
    texts: list[str] = []
    headers = {"Authorization": f"Bearer {demo.key}"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        texts.append(await asyncio.wait_for(ws.recv(), TIMEOUT_S))  # subscribed
        while len(texts) <= len(demo.expected[topic]):
            texts.append(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    return texts


async def _sdk(demo: Demo, topic: str) -> tuple[list[str], int]:
    """The SDK's events as JSON (envelope and decoded event), and how many decoded."""
    seen: list[str] = []
    decoded = 0
    async with Client(demo.url, demo.key) as client:
        async with asyncio.timeout(TIMEOUT_S):
            async for event in client.subscribe(topic):
                seen.append(event.envelope.model_dump_json())
                if event.event is not None:
                    decoded += 1
                    seen.append(event.event.model_dump_json())
                if event.position >= demo.expected[topic][-1]:
                    break
    return seen, decoded


def _rest(demo: Demo) -> dict[str, tuple[int, list[str]]]:
    """Every REST list a developer may read, each listed document by the id it was shown,
    and the refusals of the others: (documents, raw bodies) per path."""
    answers: dict[str, tuple[int, list[str]]] = {}
    headers = {"Authorization": f"Bearer {demo.key}"}
    with httpx.Client(base_url=demo.url, headers=headers, timeout=TIMEOUT_S) as http:
        for name in ("farms", "nodes", "contracts", "negotiations"):
            listed = http.get(f"/v1/{name}")
            assert listed.status_code == 200, listed.text
            bodies = [listed.text]
            items = listed.json()["items"]
            for item in items:
                one = http.get(f"/v1/{name}/{item['id']}")
                assert one.status_code == 200, (name, item["id"], one.text)
                bodies.append(one.text)
            answers[name] = (len(items), bodies)
        for path in ("/v1/accounts", "/v1/workloads", "/v1/streams/hero.policies"):
            refused = http.get(path)
            assert refused.status_code == 403, (path, refused.text)
            answers[path] = (0, [refused.text])
        for path in ("/health", "/v1/schemas", "/v1/asyncapi.json", "/"):
            public = http.get(path)  # public, or open to any key: scanned all the same
            assert public.status_code == 200, (path, public.text)
            answers[path] = (0, [public.text])
        metrics = http.get("/metrics")  # an admin's: a developer key is refused, scanned too
        assert metrics.status_code == 403, metrics.text
        answers["/metrics"] = (0, [metrics.text])
    return answers


def test_a_developer_key_receives_no_offtaker_id_after_the_demo(demo: Demo) -> None:
    report: list[str] = []
    for topic in DEVELOPER_TOPICS:
        raw, ids = asyncio.run(_sse(demo, topic))
        assert ids == demo.expected[topic], topic
        assert _hits(demo, raw) == [], f"SSE {topic} names an offtaker"
        texts = asyncio.run(_ws(demo, topic))
        assert [json.loads(t)["id"] for t in texts[1:]] == demo.expected[topic]
        assert [t for t in texts if _hits(demo, t)] == [], f"WebSocket {topic} names an offtaker"
        seen, decoded = asyncio.run(_sdk(demo, topic))
        assert [s for s in seen if _hits(demo, s)] == [], f"SDK {topic} names an offtaker"
        report.append(
            f"{topic}: {len(ids)} SSE frames ({len(raw)} bytes), {len(texts) - 1} WebSocket "
            f"frames, {len(seen) - decoded} SDK events ({decoded} decoded as schemas models); "
            "hits 0"
        )
    for path, (count, bodies) in _rest(demo).items():
        assert [b for b in bodies if _hits(demo, b)] == [], f"REST {path} names an offtaker"
        report.append(f"REST {path}: {count} documents, {len(bodies)} answers; hits 0")
    print(f"offtakers searched for: {len(demo.offtakers)} ({', '.join(sorted(demo.offtakers))})")
    print("\n".join(report))
