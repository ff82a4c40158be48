"""The golden history (tests/golden: full demo runs) appended to a store of any engine, in its
order, so each event lands at the position it was recorded at."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

from hero.store import ANY_VERSION, EventStore, NewEvent
from schemas import REGISTRY

GOLDEN = Path(__file__).parent / "golden" / "demo-history.jsonl.gz"


def append_golden(store: EventStore) -> int:
    """Append every golden event in one group commit; the event count."""
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as source:
        envelopes = [json.loads(line) for line in source if line.strip()]
    with store.group_commit():
        for each in envelopes:
            new = NewEvent(
                type=each["type"],
                schema_version=each["schema_version"],
                topic=REGISTRY.entry(each["type"]).topic.value,
                payload=each["payload"],
                occurred_at=datetime.fromisoformat(each["occurred_at"]),
                actor=each["actor"],
                id=each["id"],
                causation_id=each["causation_id"],
                correlation_id=each["correlation_id"],
            )
            store.append(each["stream"], ANY_VERSION, [new], f"golden-{each['id']}")
    return len(envelopes)
