"""Base classes of every event and command, and the decorators that register them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from schemas.ids import CommandId
from schemas.registry import REGISTRY, MessageKind, SchemaRegistry
from schemas.topics import Topic

__all__ = ["Command", "Event", "Message", "command", "event"]


class Message(BaseModel):
    """A registered, versioned payload. Immutable; unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC: ClassVar[Topic]


class Event(Message):
    """A fact, named in the past tense."""


class Command(Message):
    """An intent, named in the imperative. Every command carries a unique id."""

    command_id: CommandId


M = TypeVar("M", bound=type[Message])


def _registrar(
    kind: MessageKind,
    topic: Topic,
    version: int,
    registry: SchemaRegistry,
    writer: str | None = None,
) -> Callable[[M], M]:
    def register(cls: M) -> M:
        cls.TYPE = cls.__name__
        cls.SCHEMA_VERSION = version
        cls.TOPIC = topic
        registry.register(cls, kind=kind, topic=topic, version=version, writer=writer)
        return cls

    return register


def event(
    topic: Topic,
    *,
    version: int = 1,
    writer: str | None = None,
    registry: SchemaRegistry = REGISTRY,
) -> Callable[[M], M]:
    """Register an event class under its class name, on ``topic``, at schema ``version``.

    ``writer`` names the only service that records it (money: ``ledger``); a hand-made append
    of such an event is refused, because it could create or move money outside the ledger.
    """
    return _registrar("event", topic, version, registry, writer)


def command(*, version: int = 1, registry: SchemaRegistry = REGISTRY) -> Callable[[M], M]:
    """Register a command class; commands travel on ``hero.commands``."""
    return _registrar("command", Topic.COMMANDS, version, registry)
