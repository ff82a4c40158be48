"""The catalogue, public (no key): ``GET /v1/asyncapi.json``, ``GET /v1/schemas`` and
``GET /v1/schemas/{type}``, all generated from :data:`schemas.REGISTRY`.

Developers read these before they hold a key, to consume Kafka directly or the gateway's
Server-Sent Events. The AsyncAPI 3.0.0 document describes, per topic, a Kafka channel (its
address is the topic) and, for the topics of stored events, its SSE twin on the gateway
(``sse-<topic>``), with one message per registered type:

- the record **value** is the JSON envelope (``components.schemas.Envelope``) whose ``type``
  is the message's name and whose ``payload`` follows the type's schema
  (``components.schemas.<Type>``); a command's value is the command itself;
- the record **key** is what the code sends: the relay (``hero.log.producer``) keys each
  stored event by the envelope's ``stream`` (its aggregate's stream id, e.g. ``node-<node id>``,
  ``nego-<negotiation id>``, ``account-<account>``), so one aggregate stays in order on one
  partition; telemetry (``UtilizationSampled``, straight to Kafka) is keyed by its workload id,
  dead letters by their source topic;
- the record **headers**: ``type`` (the message type, UTF-8); everything else is in the envelope.

Nothing here changes at runtime: each document is generated once and kept serialized.
"""

from __future__ import annotations

import copy
import difflib
import importlib.metadata
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from hero.gateway._openapi import errors
from hero.gateway.context import GatewayContext
from hero.log.consumer import DeadLetter
from schemas import REGISTRY, Envelope, Topic
from schemas.registry import SchemaEntry, SchemaRegistry

__all__ = [
    "ASYNCAPI_VERSION",
    "asyncapi_document",
    "channel_id",
    "message_key",
    "package_version",
    "router",
    "schema_list",
]

ASYNCAPI_VERSION = "3.0.0"
DISTRIBUTION = "hero-grid"
JSON = "application/json"
KAFKA_BINDING = "0.5.0"
HTTP_BINDING = "0.3.0"
_COMPONENTS = "#/components/schemas/{model}"
_DEFAULT_BOOTSTRAP = "localhost:9092"
#: Topics whose records are not in the event store (so not on the gateway's streams).
_NOT_STORED = frozenset({Topic.COMMANDS, Topic.DLQ})

_TOPIC_NOTES: dict[Topic, str] = {
    Topic.POLICIES: "Farmers' auto-accept policies and offtakers' mandates.",
    Topic.RESERVATIONS: (
        "The market: RFQs, offers, declines with reasons, holds, acceptances, contracts, "
        "cancellations."
    ),
    Topic.UTILIZATION: (
        "Nodes and workloads: registrations, node status, usage, scale decisions, placements, "
        "migrations, and the utilization samples sent straight to Kafka by telemetry."
    ),
    Topic.PAYMENTS: "Fiat payments, quotes, conversions, ledger transfers, usage bills, SLA.",
    Topic.COMMANDS: (
        "Commands, as the command processor reads them (DESIGN.md): the record value is the "
        "command's JSON (every command carries a unique command_id), the key its aggregate id. "
        "This version applies commands through the gateway's REST API and the CLI; no process "
        "publishes to this topic yet."
    ),
    Topic.DLQ: (
        "Records a consumer could not decode or validate, with the reason, the consumer and "
        "the source topic, partition and offset; keyed by the source topic."
    ),
}


def package_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0+unknown"


def channel_id(topic: Topic | str) -> str:
    """The AsyncAPI id of a topic's Kafka channel: ``hero.reservations`` -> ``reservations``
    (ids may not hold dots; the address is the topic itself)."""
    return str(topic).removeprefix("hero.").replace(".", "-")


def message_key(entry: SchemaEntry) -> dict[str, Any]:
    """The schema of the Kafka record key of ``entry``'s messages, as the code sends it."""
    if entry.kind == "command":
        return {"type": "string", "description": "the id of the aggregate the command is for"}
    if entry.type == "UtilizationSampled":
        return {
            "type": "string",
            "description": "the sample's workload_id (telemetry goes straight to Kafka, keyed "
            "by workload, so one workload's samples stay in order on one partition)",
        }
    return {
        "type": "string",
        "description": "the envelope's `stream`: the aggregate's stream id (the relay keys "
        "every stored event by it, so one aggregate's events stay in order on one partition)",
    }


def schema_list(registry: SchemaRegistry = REGISTRY) -> list[dict[str, Any]]:
    """``GET /v1/schemas``: every registered type with its kind, topic and version."""
    return [
        {"type": e.type, "kind": e.kind, "topic": e.topic.value, "version": e.version}
        for e in registry.entries()
    ]


def _envelope_value(entry: SchemaEntry) -> dict[str, Any]:
    """The record value of an event type: the envelope with its type and payload pinned."""
    return {
        "allOf": [
            {"$ref": _COMPONENTS.format(model="Envelope")},
            {
                "type": "object",
                "properties": {
                    "type": {"const": entry.type},
                    "schema_version": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": entry.version,
                        "description": f"{entry.version} when written by this version; older "
                        "payloads are upcast on read by the SDK and the gateway",
                    },
                    "payload": {"$ref": _COMPONENTS.format(model=entry.type)},
                },
            },
        ]
    }


def _headers(type_name: str) -> dict[str, Any]:
    """The Kafka record headers: only ``type`` (the envelope carries everything else)."""
    return {
        "type": "object",
        "properties": {
            "type": {
                "type": "string",
                "const": type_name,
                "description": "Kafka record header: the message type (UTF-8)",
            }
        },
    }


def _message(entry: SchemaEntry) -> dict[str, Any]:
    doc = (entry.model.__doc__ or "").strip()
    if entry.kind == "command":
        payload: dict[str, Any] = {"$ref": _COMPONENTS.format(model=entry.type)}
        about = f"Command {entry.type} (v{entry.version}) on {entry.topic.value}."
    else:
        payload = _envelope_value(entry)
        about = (
            f"Event {entry.type} (schema v{entry.version}) on {entry.topic.value}: the envelope "
            f"(components.schemas.Envelope) carrying a {entry.type} payload."
        )
    return {
        "name": entry.type,
        "title": entry.type,
        "summary": doc.splitlines()[0] if doc else about,
        "description": f"{about}\n\n{doc}".strip(),
        "contentType": JSON,
        "headers": _headers(entry.type),
        "payload": payload,
        "bindings": {"kafka": {"key": message_key(entry), "bindingVersion": KAFKA_BINDING}},
        "x-hero": {"kind": entry.kind, "topic": entry.topic.value, "schema_version": entry.version},
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A record a consumer could not decode or validate.",
        "contentType": JSON,
        "payload": {"$ref": _COMPONENTS.format(model="DeadLetter")},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "the source record's topic"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _component_schemas(registry: SchemaRegistry) -> dict[str, Any]:
    entries = registry.entries()
    classes: list[type[BaseModel]] = [entry.model for entry in entries]
    classes.append(Envelope)
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(c, "serialization") for c in classes]
    _, top = models_json_schema(models, ref_template=_COMPONENTS)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for entry in entries:
        schemas[entry.type]["x-hero"] = {
            "kind": entry.kind,
            "topic": entry.topic.value,
            "schema_version": entry.version,
        }
    schemas["Envelope"]["description"] = (
        "Every event's record value, in the store and on Kafka: id, type, schema_version, "
        "stream (aggregate), version (in the stream), position (global, gap-free), "
        "occurred_at, recorded_at, causation_id, correlation_id, actor, payload. Consumers "
        "track `position`, not Kafka offsets: a redelivered or replayed record has the same one."
    )
    schemas["DeadLetter"] = TypeAdapter(DeadLetter).json_schema(ref_template=_COMPONENTS)
    return dict(sorted(schemas.items()))


@cache
def _base_document(registry: SchemaRegistry) -> dict[str, Any]:
    """Everything but the servers' hosts, which depend on the settings and the request."""
    by_topic: dict[Topic, list[SchemaEntry]] = {topic: [] for topic in Topic}
    for entry in registry.entries():
        by_topic[entry.topic].append(entry)
    messages = {entry.type: _message(entry) for entry in registry.entries()}
    messages["DeadLetter"] = _dead_letter_message()

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in Topic:
        names = [e.type for e in by_topic[topic]] or (["DeadLetter"] if topic == Topic.DLQ else [])
        refs = {name: {"$ref": f"#/components/messages/{name}"} for name in names}
        kafka_id, sse_id = channel_id(topic), f"sse-{channel_id(topic)}"
        note = _TOPIC_NOTES.get(topic, "")
        channels[kafka_id] = {
            "address": topic.value,
            "title": topic.value,
            "description": f"Kafka topic {topic.value}. {note}",
            "messages": refs,
            "servers": [{"$ref": "#/servers/kafka"}],
            "bindings": {"kafka": {"topic": topic.value, "bindingVersion": KAFKA_BINDING}},
        }
        # A client receives the event topics; it would send commands.
        kafka_action = "send" if topic == Topic.COMMANDS else "receive"
        operations[f"{kafka_action}-{kafka_id}"] = _operation(
            kafka_action, channels, kafka_id, names
        )
        if topic in _NOT_STORED:  # the gateway streams the store: these never reach it
            continue
        channels[sse_id] = {
            "address": f"/v1/streams/{topic.value}",
            "title": f"{topic.value} (Server-Sent Events)",
            "description": (
                f"The same events through the gateway, with an API key: `GET /v1/streams/"
                f"{topic.value}` (or the WebSocket twin at `/ws`). Each SSE message is "
                "`id: POSITION`, `event: TYPE`, `data: ENVELOPE`; reconnect with "
                "`Last-Event-ID` to resume after a position. Query: types (comma list), "
                "farm, node, offtaker, grid, start (earliest | latest | a position). Keys "
                "see what their role's scopes allow (a developer key: the public market, "
                f"private fields removed). {note}"
            ),
            "messages": dict(refs),
            "servers": [{"$ref": "#/servers/gateway"}],
        }
        operations[f"receive-{sse_id}"] = {
            **_operation("receive", channels, sse_id, names),
            "bindings": {"http": {"method": "GET", "bindingVersion": HTTP_BINDING}},
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:threefold:hero",
        "info": {
            "title": "HERO event streams",
            "version": package_version(),
            "description": (
                "Every fact of HERO, the agentic layer of the ThreeFold Grid, is an event in "
                "the event store, relayed in order to Kafka and served by the gateway as "
                "Server-Sent Events. Operations are written from the view of a client: it "
                "receives the event topics (and would send commands). Each record value is "
                "a JSON envelope (components.schemas.Envelope); its Kafka key is the "
                "aggregate's stream id (the envelope's `stream`), so order holds per "
                "aggregate; its only header is `type`. Schemas are versioned and older "
                "payloads are upcast on read; each type's JSON Schema is also at "
                "`GET /v1/schemas/{type}`."
            ),
        },
        "defaultContentType": JSON,
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _component_schemas(registry),
            "messages": dict(sorted(messages.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer KEY` (keys: `hero keys create`)",
                },
                "apiKey": {"type": "httpApiKey", "name": "X-API-Key", "in": "header"},
            },
        },
    }


def _operation(
    action: str, channels: Mapping[str, Any], chan: str, names: list[str]
) -> dict[str, Any]:
    return {
        "action": action,
        "title": f"{action.capitalize()} {channels[chan]['title']}",
        "channel": {"$ref": f"#/channels/{chan}"},
        "messages": [{"$ref": f"#/channels/{chan}/messages/{name}"} for name in names],
    }


def _servers(kafka_bootstrap: str | None, gateway_host: str) -> dict[str, Any]:
    hosts = [h.strip() for h in (kafka_bootstrap or "").split(",") if h.strip()]
    kafka: dict[str, Any] = {
        "host": hosts[0] if hosts else "{bootstrap}",
        "protocol": "kafka",
        "title": "Kafka",
        "description": (
            "The Kafka bootstrap (HERO_KAFKA_BOOTSTRAP)"
            + (f"; all brokers: {', '.join(hosts)}" if len(hosts) > 1 else "")
            + ". Track store positions (the envelope's `position`), not offsets."
        ),
    }
    if not hosts:
        kafka["variables"] = {
            "bootstrap": {
                "default": _DEFAULT_BOOTSTRAP,
                "description": "this deployment's HERO_KAFKA_BOOTSTRAP (not configured here)",
            }
        }
    return {
        "kafka": kafka,
        "gateway": {
            "host": gateway_host,
            "protocol": "http",
            "pathname": "/v1/streams",
            "title": "HERO gateway (Server-Sent Events)",
            "description": "The gateway's SSE and WebSocket streams, behind API keys.",
            "security": [
                {"$ref": "#/components/securitySchemes/bearer"},
                {"$ref": "#/components/securitySchemes/apiKey"},
            ],
        },
    }


def asyncapi_document(
    registry: SchemaRegistry = REGISTRY,
    *,
    kafka_bootstrap: str | None = None,
    gateway_host: str = "127.0.0.1:8000",
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``registry`` (a fresh dict; the base is generated once)."""
    document = copy.deepcopy(_base_document(registry))
    document["servers"] = _servers(kafka_bootstrap, gateway_host)
    order = ("asyncapi", "id", "info", "servers", "defaultContentType", "channels", "operations")
    return {k: document[k] for k in (*order, "components")}


def _close_matches(name: str, known: Mapping[str, Any]) -> list[str]:
    by_lower = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
    found += [k for low, k in by_lower.items() if name.lower() in low and low != name.lower()]
    return list(dict.fromkeys(by_lower.get(f, f) for f in found))[:5]


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(prefix="/v1", tags=["catalogue"])
    bootstrap = context.settings.kafka_bootstrap
    asyncapi_bodies: dict[str, bytes] = {}  # per gateway host seen in requests (a few)
    json_schemas = REGISTRY.json_schemas()  # generated once: the registry is fixed at import
    schema_bodies = {name: _dumps(schema) for name, schema in json_schemas.items()}
    list_body = _dumps(schema_list())

    @api.get(
        "/asyncapi.json",
        summary="The AsyncAPI 3.0.0 document of every topic, message, key and the envelope",
        responses={200: {"content": {JSON: {}}}},
    )
    async def asyncapi(request: Request) -> Response:
        host = request.headers.get("host") or f"{context.settings.host}:80"
        body = asyncapi_bodies.get(host)
        if body is None:
            body = _dumps(asyncapi_document(kafka_bootstrap=bootstrap, gateway_host=host))
            if len(asyncapi_bodies) >= 16:  # Host is the client's to choose: stay bounded
                asyncapi_bodies.pop(next(iter(asyncapi_bodies)))
            asyncapi_bodies[host] = body
        return Response(body, media_type=JSON, headers=_CACHE)

    @api.get("/schemas", summary="Every event and command type: kind, topic, schema version")
    async def list_schemas() -> Response:
        return Response(list_body, media_type=JSON, headers=_CACHE)

    @api.get(
        "/schemas/{type_name}",
        summary="The JSON Schema of one event or command type",
        responses={
            404: {**errors(404)[404], "description": "unknown type; `close_matches` names some"}
        },
    )
    async def get_schema(type_name: str) -> Response:
        body = schema_bodies.get(type_name)
        if body is None:
            matches = _close_matches(type_name, schema_bodies)
            hint = f"; did you mean {', '.join(matches)}?" if matches else ""
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail={
                    "error": "unknown_type",
                    "message": f"no message type {type_name!r}{hint} (GET /v1/schemas lists them)",
                    "close_matches": matches,
                },
            )
        return Response(body, media_type=JSON, headers=_CACHE)

    return api


_CACHE = {"Cache-Control": "public, max-age=300"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
