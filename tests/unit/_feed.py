"""Hand-built envelopes for the agents' pure parts: events in any order, with recorded times.

``Feed().wrap(event, stream, at)`` numbers each stream's versions and the global positions
the way a store would, so a test can deliver events as Kafka might (streams interleaved in
any order) without a store.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from schemas import Envelope, Event
from tests.unit._gwt import T0

__all__ = ["Feed"]


class Feed:
    def __init__(self) -> None:
        self.position = 0
        self.versions: Counter[str] = Counter()

    def wrap(self, event: Event, stream: str, at: datetime = T0) -> Envelope:
        self.position += 1
        self.versions[stream] += 1
        return Envelope(
            id=f"evt_{self.position}",
            type=type(event).__name__,
            schema_version=1,
            stream=stream,
            version=self.versions[stream],
            position=self.position,
            occurred_at=at,
            recorded_at=at,
            actor="test",
            payload=event.model_dump(mode="json"),
        )
