"""The schema registry: type name -> class, topic and current version, with upcasters.

An event written at an older schema version is upcast step by step (v1 -> v2 -> ...) on
read, so stored history never has to be rewritten.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from schemas.bounds import RECORDED
from schemas.topics import Topic

if TYPE_CHECKING:
    from schemas.messages import Message

__all__ = [
    "REGISTRY",
    "FieldError",
    "InvalidPayload",
    "MessageKind",
    "SchemaEntry",
    "SchemaRegistry",
    "SchemaVersionError",
    "UnknownMessageType",
    "Upcaster",
]

MessageKind = Literal["event", "command"]
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownMessageType(LookupError):
    def __init__(self, type_name: str, known: Iterable[str]):
        self.type_name = type_name
        hint = ", ".join(sorted(known)[:12])
        super().__init__(f"unknown message type {type_name!r} (known types include: {hint})")


class SchemaVersionError(ValueError):
    """A payload at a version this code cannot read (too new, or no upcaster for it)."""


@dataclass(frozen=True)
class FieldError:
    location: str
    message: str
    kind: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class InvalidPayload(ValueError):
    """A payload that does not match its schema; ``errors`` names each field that is wrong."""

    def __init__(self, type_name: str, errors: list[FieldError]):
        self.type_name = type_name
        self.errors = errors
        details = "; ".join(str(error) for error in errors)
        super().__init__(f"invalid {type_name} payload: {details}")

    @classmethod
    def from_validation(cls, type_name: str, error: ValidationError) -> InvalidPayload:
        fields = [
            FieldError(
                location=".".join(str(part) for part in item["loc"]) or "(payload)",
                message=item["msg"],
                kind=item["type"],
            )
            for item in error.errors(include_url=False)
        ]
        return cls(type_name, fields)


@dataclass(frozen=True)
class SchemaEntry:
    type: str
    model: builtins.type[Message]
    kind: MessageKind
    topic: Topic
    version: int
    writer: str | None = None
    """The only service that may record this event (``ledger`` for money), or None for any."""

    @property
    def raw_append(self) -> bool:
        """May a hand-made append (``hero events append``) record it? Not a money event."""
        return self.writer is None


class SchemaRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, SchemaEntry] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self,
        model: type[Message],
        *,
        kind: MessageKind,
        topic: Topic,
        version: int,
        writer: str | None = None,
    ) -> None:
        name = model.__name__
        existing = self._entries.get(name)
        if existing is not None and existing.model is not model:
            raise ValueError(f"message type {name!r} is registered twice")
        if version < 1:
            raise ValueError(f"{name}: schema versions start at 1")
        self._entries[name] = SchemaEntry(name, model, kind, topic, version, writer)

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the step that turns a ``from_version`` payload into ``from_version + 1``."""

        def register(step: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = step
            return step

        return register

    def entry(self, type_name: str) -> SchemaEntry:
        try:
            return self._entries[type_name]
        except KeyError:
            raise UnknownMessageType(type_name, self._entries) from None

    def topic_for(self, type_name: str) -> Topic:
        return self.entry(type_name).topic

    def entries(self, kind: MessageKind | None = None) -> list[SchemaEntry]:
        return sorted(
            (e for e in self._entries.values() if kind is None or e.kind == kind),
            key=lambda e: e.type,
        )

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._entries

    def upcast(
        self, type_name: str, version: int, payload: Mapping[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        entry = self.entry(type_name)
        if version > entry.version:
            raise SchemaVersionError(
                f"{type_name} v{version} is newer than this code knows (v{entry.version})"
            )
        if version < 1:
            raise SchemaVersionError(f"{type_name}: schema version {version} is not valid")
        data = dict(payload)
        while version < entry.version:
            step = self._upcasters.get((type_name, version))
            if step is None:
                raise SchemaVersionError(
                    f"no upcaster for {type_name} v{version} -> v{version + 1}"
                )
            try:
                data = step(data)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                detail = FieldError(
                    str(error).strip("'"), f"cannot upcast from v{version}", "upcast"
                )
                raise InvalidPayload(type_name, [detail]) from None
            version += 1
        return version, data

    def decode(self, type_name: str, version: int, payload: Mapping[str, Any]) -> Message:
        """Upcast ``payload`` to the current version and validate it into its class."""
        return self._validated(type_name, version, payload, RECORDED)

    def validate(self, type_name: str, payload: Mapping[str, Any]) -> Message:
        """Validate a payload written at the current version (for new events and commands)."""
        entry = self.entry(type_name)
        return self._validated(type_name, entry.version, payload, None)

    def _validated(
        self,
        type_name: str,
        version: int,
        payload: Mapping[str, Any],
        context: dict[str, Any] | None,
    ) -> Message:
        entry = self.entry(type_name)
        _, data = self.upcast(type_name, version, payload)
        try:
            return entry.model.model_validate(data, context=context)
        except ValidationError as error:
            raise InvalidPayload.from_validation(type_name, error) from None

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """One JSON Schema per type, annotated with its kind, topic and version."""
        schemas: dict[str, dict[str, Any]] = {}
        for entry in self.entries():
            schema = entry.model.model_json_schema(mode="serialization")
            schema["x-hero"] = {
                "kind": entry.kind,
                "topic": entry.topic.value,
                "schema_version": entry.version,
            }
            schemas[entry.type] = schema
        return schemas


#: The process-wide registry that ``schemas`` registers its catalogue into.
REGISTRY = SchemaRegistry()
