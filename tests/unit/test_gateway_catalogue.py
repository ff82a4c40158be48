"""The catalogue (hero.gateway.catalogue): the AsyncAPI 3.0.0 document generated from the schema
registry, and the public schema routes, on a bare FastAPI app."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway.catalogue import asyncapi_document, channel_id, package_version, router
from hero.gateway.context import GatewayContext
from hero.market.service import MarketService
from hero.store.memory import MemoryEventStore
from schemas import (
    REGISTRY,
    AcceptOffer,
    Grid,
    IssueRfq,
    MakeOffer,
    Money,
    RegisterFarm,
    RegisterNode,
    Resources,
    Sla,
    Topic,
)

DOC = asyncapi_document(kafka_bootstrap="10.0.0.1:9092,10.0.0.2:9092", gateway_host="gw:8080")
ID_KEY = re.compile(r"^[A-Za-z0-9_\-]+$")  # channels and operations
COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_document_is_asyncapi_3_shaped() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"]
    assert DOC["info"]["version"] == package_version()
    assert {"servers", "channels", "operations", "components"} <= DOC.keys()
    assert DOC["defaultContentType"] == "application/json"
    assert DOC["servers"]["kafka"] == DOC["servers"]["kafka"] | {
        "host": "10.0.0.1:9092",
        "protocol": "kafka",
    }
    assert "10.0.0.2:9092" in DOC["servers"]["kafka"]["description"]
    assert DOC["servers"]["gateway"]["protocol"] == "http"
    assert DOC["servers"]["gateway"]["host"] == "gw:8080"
    assert all(ID_KEY.match(key) for key in DOC["channels"])
    assert all(ID_KEY.match(key) for key in DOC["operations"])
    for section in DOC["components"].values():
        assert all(COMPONENT_KEY.match(key) for key in section)
    for operation in DOC["operations"].values():
        assert operation["action"] in {"send", "receive"}
        assert operation["channel"]["$ref"].startswith("#/channels/")
    json.dumps(DOC)  # plain JSON all the way down


def test_every_reference_resolves() -> None:
    refs = set(_refs(DOC))
    assert refs
    for ref in refs:
        assert _resolve(DOC, ref) is not None, ref


def test_every_registered_type_is_a_message_on_its_topics_channel() -> None:
    for entry in REGISTRY.entries():
        channel = DOC["channels"][channel_id(entry.topic)]
        assert channel["address"] == entry.topic.value
        assert channel["messages"][entry.type] == {"$ref": f"#/components/messages/{entry.type}"}
        message = DOC["components"]["messages"][entry.type]
        assert message["name"] == message["title"] == entry.type
        assert message["x-hero"] == {
            "kind": entry.kind,
            "topic": entry.topic.value,
            "schema_version": entry.version,
        }
        assert message["headers"]["properties"]["type"]["const"] == entry.type
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert DOC["components"]["schemas"][entry.type]["x-hero"]["topic"] == entry.topic.value
        ops = [
            op
            for op in DOC["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{channel_id(entry.topic)}"
        ]
        assert len(ops) == 1
        assert {"$ref": f"#/channels/{channel_id(entry.topic)}/messages/{entry.type}"} in ops[0][
            "messages"
        ]


def test_one_kafka_channel_per_topic_and_sse_twins_for_stored_events() -> None:
    kafka = {k: c for k, c in DOC["channels"].items() if not k.startswith("sse-")}
    assert sorted(c["address"] for c in kafka.values()) == sorted(t.value for t in Topic)
    for channel in kafka.values():
        assert channel["servers"] == [{"$ref": "#/servers/kafka"}]
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
    sse = {k: c for k, c in DOC["channels"].items() if k.startswith("sse-")}
    assert sorted(c["address"] for c in sse.values()) == sorted(
        f"/v1/streams/{t.value}" for t in Topic if t not in (Topic.COMMANDS, Topic.DLQ)
    )
    for key, channel in sse.items():
        assert channel["servers"] == [{"$ref": "#/servers/gateway"}]
        assert channel["messages"] == DOC["channels"][key.removeprefix("sse-")]["messages"]
        assert DOC["operations"][f"receive-{key}"]["bindings"]["http"]["method"] == "GET"


def test_commands_and_dead_letters_are_documented() -> None:
    commands = DOC["channels"]["commands"]
    assert set(commands["messages"]) == {e.type for e in REGISTRY.entries("command")}
    assert DOC["operations"]["send-commands"]["action"] == "send"
    accept = DOC["components"]["messages"]["AcceptOffer"]
    assert accept["payload"] == {"$ref": "#/components/schemas/AcceptOffer"}
    assert "aggregate" in accept["bindings"]["kafka"]["key"]["description"]
    assert set(DOC["channels"]["dlq"]["messages"]) == {"DeadLetter"}
    assert (
        "source"
        in DOC["components"]["messages"]["DeadLetter"]["bindings"]["kafka"]["key"]["description"]
    )


def test_keys_are_described_as_the_code_sends_them() -> None:
    messages = DOC["components"]["messages"]
    assert "stream" in messages["RfqIssued"]["bindings"]["kafka"]["key"]["description"]
    assert "workload" in messages["UtilizationSampled"]["bindings"]["kafka"]["key"]["description"]


def test_the_envelope_is_a_component_with_every_field() -> None:
    envelope = DOC["components"]["schemas"]["Envelope"]
    assert set(envelope["properties"]) == {
        *("id", "type", "schema_version", "stream", "version", "position"),
        *("occurred_at", "recorded_at", "causation_id", "correlation_id", "actor", "payload"),
    }


def test_every_payload_is_a_json_schema() -> None:
    for name, message in DOC["components"]["messages"].items():
        for schema in (message["payload"], message.get("headers", {})):
            jsonschema.Draft7Validator.check_schema(schema)
            jsonschema.Draft202012Validator.check_schema(schema)
        assert message["payload"], name
    for schema in DOC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def _validator(message: str) -> jsonschema.Draft202012Validator:
    """The message's payload schema, with the document as its root so its $refs resolve."""
    root = dict(DOC)
    root["$ref"] = f"#/components/messages/{message}/payload"
    return jsonschema.Draft202012Validator(root)


def _market_events() -> list[dict[str, Any]]:
    store = MemoryEventStore()
    market = MarketService(store, actor="test-catalogue")
    now = datetime.now(UTC)
    shape = Resources.from_gb(cru=1, mru_gb=2, sru_gb=10)
    market.handle(
        RegisterFarm(
            command_id="c1", farm_id="f1", name="f1", grid=Grid.GRID4, country="BE", region="eu"
        )
    )
    market.handle(
        RegisterNode(
            command_id="c2",
            node_id="n1",
            farm_id="f1",
            grid=Grid.GRID4,
            country="BE",
            region="eu",
            total=shape.times(4),
            uptime_pct=Decimal("99.5"),
        )
    )
    market.handle(
        IssueRfq(
            command_id="c3",
            negotiation_id="o1.web.1",
            offtaker_id="o1",
            workload_id="web",
            resources=shape,
            replicas=1,
            grids=[Grid.GRID4],
            max_price_cu_hour=Money.of("0.05", "USD"),
            term_hours=24,
            deadline=now + timedelta(hours=1),
            invited_farms=["f1"],
        )
    )
    market.handle(
        MakeOffer(
            command_id="c4",
            negotiation_id="o1.web.1",
            offer_id="o1.web.1.f1.0",
            farm_id="f1",
            node_id="n1",
            price_hour=Money.of("0.03", "USD"),
            term_hours=24,
            sla=Sla(uptime_pct=Decimal("99")),
            firm=True,
            expires_at=now + timedelta(hours=1),
        )
    )
    market.handle(AcceptOffer(command_id="c5", negotiation_id="o1.web.1", offer_id="o1.web.1.f1.0"))
    return [json.loads(row.envelope_json) for row in store.read_all(1, 1000)]


def test_recorded_envelopes_validate_against_their_messages() -> None:
    envelopes = _market_events()
    types = {e["type"] for e in envelopes}
    assert {"RfqIssued", "OfferMade", "ContractCreated"} <= types
    for envelope in envelopes:
        _validator(envelope["type"]).validate(envelope)
        wrong = next(t for t in sorted(types) if t != envelope["type"])
        assert not _validator(wrong).is_valid(envelope)  # the type is pinned
    broken = dict(envelopes[0], payload={"nonsense": 1})
    assert not _validator(broken["type"]).is_valid(broken)


def test_without_a_bootstrap_the_kafka_host_is_a_variable() -> None:
    doc = asyncapi_document(kafka_bootstrap=None, gateway_host="h:1")
    kafka = doc["servers"]["kafka"]
    assert kafka["host"] == "{bootstrap}"
    assert kafka["variables"]["bootstrap"]["default"]


def test_documents_are_fresh_copies_of_one_generation() -> None:
    first = asyncapi_document(kafka_bootstrap="a:1")
    first["components"]["messages"].clear()
    assert asyncapi_document(kafka_bootstrap="a:1")["components"]["messages"]


# -- the routes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("catalogue")
    context = GatewayContext(
        settings=HeroSettings(data_dir=data_dir, kafka_bootstrap="127.0.0.1:19092"),
        store=MemoryEventStore(),
        redis=cast(Any, None),  # the catalogue never touches Valkey
        clock=SystemClock(),
    )
    app = FastAPI()
    app.include_router(router(context))
    with TestClient(app) as test_client:
        yield test_client


def test_asyncapi_route_needs_no_key(client: TestClient) -> None:
    answer = client.get("/v1/asyncapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["asyncapi"] == "3.0.0"
    assert body["servers"]["kafka"]["host"] == "127.0.0.1:19092"
    assert body["servers"]["gateway"]["host"] == "testserver"
    assert set(body["components"]["messages"]) >= {e.type for e in REGISTRY.entries()}
    assert client.get("/v1/asyncapi.json").content == answer.content  # served from the cache


def test_schema_list_and_one_schema(client: TestClient) -> None:
    listed = client.get("/v1/schemas").json()
    assert listed == [
        {"type": e.type, "kind": e.kind, "topic": e.topic.value, "version": e.version}
        for e in REGISTRY.entries()
    ]
    answer = client.get("/v1/schemas/RfqIssued")
    assert answer.status_code == 200
    assert answer.json() == REGISTRY.json_schemas()["RfqIssued"]
    jsonschema.Draft202012Validator.check_schema(answer.json())


def test_an_unknown_type_is_404_with_close_matches(client: TestClient) -> None:
    answer = client.get("/v1/schemas/RfqIsued")
    assert answer.status_code == 404
    detail = answer.json()["detail"]
    assert detail["error"] == "unknown_type"
    assert "RfqIssued" in detail["close_matches"]
    assert "RfqIssued" in detail["message"]
    assert client.get("/v1/schemas/rfqissued").json()["detail"]["close_matches"][0] == "RfqIssued"
    nothing = client.get("/v1/schemas/zzzzzz").json()["detail"]
    assert nothing["close_matches"] == []
