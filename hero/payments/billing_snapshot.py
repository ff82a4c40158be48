"""Billing's folded state as snapshot bytes, and back: its part of the market model and the
two sets of its own decisions (contracts billed to their end, penalties waived at the rate
they were read), which a replay of the log alone would not give back.

Framed as the model's (:func:`hero.model.snapshot.frame`: magic, version, digest);
:data:`BILLING_SCHEMA_VERSION` stands for the model's format and billing's own part
together, the latter pinned by :data:`BILLING_FINGERPRINT` (``tests/unit/
test_billing_snapshot.py`` fails on a change until :data:`BILLING_VERSION` is bumped with
it). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hero.model import MarketState
from hero.model.codec import Shape, codec_for, describe
from hero.model.snapshot import MODEL_SCHEMA_VERSION, decode_framed, encode_framed
from hero.store import SnapshotCadence, SnapshotKeeper, SnapshotStore

__all__ = [
    "BILLING_FINGERPRINT",
    "BILLING_SCHEMA_VERSION",
    "BILLING_VERSION",
    "SNAPSHOT_NAME",
    "BillingDecisions",
    "billing_fingerprint",
    "billing_snapshots",
    "decode_billing",
    "encode_billing",
]

#: The format of billing's own part; bump it with :data:`BILLING_FINGERPRINT`.
BILLING_VERSION = 1
BILLING_SCHEMA_VERSION = MODEL_SCHEMA_VERSION * 1000 + BILLING_VERSION
BILLING_FINGERPRINT = "a5407a9fade7967f60a29a9770355aa532d0b83062958c22e5b061139cce5b24"
SNAPSHOT_NAME = "billing"


@dataclass
class BillingDecisions:
    finished: set[str] = field(default_factory=set)
    """Contracts billed to their end: their usage facts are read no more."""
    waived: set[str] = field(default_factory=set)
    """Contracts whose penalty was less than a TFT unit at the rate it was read."""


def billing_fingerprint() -> str:
    return hashlib.sha256("\n".join(describe(BillingDecisions)).encode()).hexdigest()


def billing_snapshots(
    store: SnapshotStore, cadence: SnapshotCadence | None = None
) -> SnapshotKeeper:
    return SnapshotKeeper(store, SNAPSHOT_NAME, BILLING_SCHEMA_VERSION, cadence)


def encode_billing(state: MarketState, decisions: BillingDecisions) -> bytes:
    return encode_framed(
        lambda: [
            codec_for(MarketState).encode(state),
            codec_for(BillingDecisions).encode(decisions),
        ],
        BILLING_SCHEMA_VERSION,
    )


def decode_billing(body: bytes) -> tuple[MarketState, BillingDecisions]:
    """What ``body`` holds; :class:`SnapshotUnreadable` (saying why) if it cannot be read."""
    return decode_framed(body, BILLING_SCHEMA_VERSION, "billing's state", _decode_tree)


def _decode_tree(tree: Any) -> tuple[MarketState, BillingDecisions]:
    if type(tree) is not list or len(tree) != 2:
        raise Shape("expected [model, decisions]")
    state = codec_for(MarketState).decode(tree[0])
    decisions = codec_for(BillingDecisions).decode(tree[1])
    return state, decisions
