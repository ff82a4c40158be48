"""Rows a follower cannot read: decode them with a reason, record the skip, and go on.

A row that an older, laxer version wrote (a stream id with a trailing newline, a payload its
schema now refuses) must not stop whoever follows the store. Every follower decodes through
:func:`decode_row` and, when it raises :class:`PoisonRow`, calls :func:`skip_row`: a warning in
the log, a count per follower (:func:`skip_counts`, what health and metrics show), and a
:class:`~hero.store.port.SkippedRow` kept in the store itself once per follower and position
(``hero events skipped`` lists them). The store is the one thing every follower holds, so
that is where their dead letters live; Kafka consumers park theirs on ``hero.dlq`` instead.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from datetime import UTC, datetime

from pydantic import ValidationError

from hero.store._trusted import TrustedDecoder
from hero.store.port import EventStore, RecordedEvent, SkippedRow
from schemas import (
    REGISTRY,
    Envelope,
    Event,
    InvalidPayload,
    Message,
    SchemaRegistry,
    SchemaVersionError,
    UndecodableEvent,
    UnknownMessageType,
)

__all__ = [
    "PoisonRow",
    "SkipHandler",
    "decode_event",
    "decode_row",
    "decode_trusted",
    "readable_events",
    "skip_counts",
    "skip_row",
    "trusted_decoder",
]

log = logging.getLogger(__name__)

_COUNTS: Counter[str] = Counter()
_COUNTS_LOCK = threading.Lock()


class PoisonRow(ValueError):
    """A stored row that does not decode; ``reason`` is a code, ``detail`` says what broke."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def decode_row(row: RecordedEvent, registry: SchemaRegistry = REGISTRY) -> tuple[Envelope, Message]:
    """The row's envelope and its payload as the current class, or :class:`PoisonRow`."""
    envelope = _envelope(row)
    try:
        return envelope, envelope.decode_message(registry)
    except UnknownMessageType as error:
        raise PoisonRow("unknown_type", str(error)) from None
    except SchemaVersionError as error:
        raise PoisonRow("unsupported_version", str(error)) from None
    except InvalidPayload as error:
        raise PoisonRow("schema_invalid", str(error)) from None


def decode_event(row: RecordedEvent, registry: SchemaRegistry = REGISTRY) -> tuple[Envelope, Event]:
    """The row's envelope and its event (:meth:`Envelope.decode`), or :class:`PoisonRow`.

    A command in the log is poison too (``not_an_event``): followers read events.
    """
    envelope = _envelope(row)
    try:
        return envelope, envelope.decode(registry)
    except UndecodableEvent as error:
        raise PoisonRow(error.reason, error.detail) from None


def decode_trusted(
    row: RecordedEvent, registry: SchemaRegistry = REGISTRY
) -> tuple[Envelope, Event]:
    """As :func:`decode_event`, for a row read back from our own store and so validated
    when it was appended: built without validating it again where its class allows (see
    :mod:`hero.store._trusted`), several times faster; what it cannot build, and a poison
    row, go the validated way (:class:`PoisonRow` as there)."""
    decoded = _decoder(registry).decode(row.envelope_json)
    return decoded if decoded is not None else decode_event(row, registry)


def trusted_decoder(
    registry: SchemaRegistry = REGISTRY,
) -> Callable[[RecordedEvent], tuple[Envelope, Event]]:
    """:func:`decode_trusted` for ``registry``, its decoder looked up once: what a fold of
    a whole log calls per row."""
    decode = _decoder(registry).decode

    def decoded(row: RecordedEvent) -> tuple[Envelope, Event]:
        found = decode(row.envelope_json)
        return found if found is not None else decode_event(row, registry)

    return decoded


def _decoder(registry: SchemaRegistry) -> TrustedDecoder:
    decoder = _DECODERS.get(id(registry))
    if decoder is None or decoder[0] is not registry:
        decoder = _DECODERS[id(registry)] = (registry, TrustedDecoder(registry))
    return decoder[1]


_DECODERS: dict[int, tuple[SchemaRegistry, TrustedDecoder]] = {}


def _envelope(row: RecordedEvent) -> Envelope:
    try:
        return Envelope.model_validate_json(row.envelope_json)
    except ValidationError as error:
        raise PoisonRow("invalid_envelope", _summary(error)) from None


#: What a reader does with a row it steps over (a follower records it, the CLI warns).
SkipHandler = Callable[[RecordedEvent, PoisonRow], None]


def readable_events(
    rows: Iterable[RecordedEvent],
    on_skip: SkipHandler,
    *,
    types: Container[str] | None = None,
) -> Iterator[tuple[RecordedEvent, Envelope, Event]]:
    """The rows (of ``types`` when given) that decode to events, each with its envelope and
    event; every other row of those types goes to ``on_skip`` and is stepped over."""
    for row in rows:
        if types is not None and row.type not in types:
            continue
        try:
            envelope, event = decode_event(row)
        except PoisonRow as error:
            on_skip(row, error)
            continue
        yield row, envelope, event


def skip_row(store: EventStore | None, source: str, row: RecordedEvent, error: PoisonRow) -> None:
    """Record that ``source`` stepped over ``row``: log, count, and keep it in ``store``.

    Keeping it may fail (the store is busy or away): the skip is still logged and counted,
    and the follower goes on, because stopping on a row is what this exists to prevent.
    """
    with _COUNTS_LOCK:
        _COUNTS[source] += 1
    log.warning(
        "%s: skipped the row at position %d (stream %r, type %r): %s",
        source,
        row.position,
        row.stream,
        row.type,
        error,
    )
    if store is None:
        return
    skip = SkippedRow(
        source=source,
        position=row.position,
        stream=row.stream,
        type=row.type,
        reason=error.reason,
        detail=error.detail[:2000],
        skipped_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        store.record_skip(skip)
    except Exception:
        log.exception("%s: could not record the skip of position %d", source, row.position)


def skip_counts() -> dict[str, int]:
    """Rows skipped in this process so far, by follower."""
    with _COUNTS_LOCK:
        return dict(_COUNTS)


def _summary(error: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in item['loc']) or '(row)'}: {item['msg']}"
        for item in error.errors(include_url=False)[:10]
    ]
    return "; ".join(parts)
