"""The treasury's pending conversions as snapshot bytes, and back: the payments received and
not converted yet, the payments converted (a receipt repeated after its conversion must not
be converted again) and the store position they were folded through.

Framed as the market model's (:func:`hero.model.snapshot.frame`: magic, version, digest);
:data:`TREASURY_SCHEMA_VERSION` is pinned by :data:`TREASURY_FINGERPRINT`, the shape of
:class:`PendingConversions` (``tests/unit/test_treasury_snapshot.py`` fails on a change until
the version is bumped with it). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hero.model.codec import codec_for, describe
from hero.model.snapshot import decode_framed, encode_framed
from hero.store import SnapshotCadence, SnapshotKeeper, SnapshotStore
from schemas import FiatPaymentReceived

__all__ = [
    "SNAPSHOT_NAME",
    "TREASURY_FINGERPRINT",
    "TREASURY_SCHEMA_VERSION",
    "PendingConversions",
    "decode_pending",
    "encode_pending",
    "treasury_fingerprint",
    "treasury_snapshots",
]

#: The format of a treasury snapshot; bump it with :data:`TREASURY_FINGERPRINT`.
TREASURY_SCHEMA_VERSION = 1
TREASURY_FINGERPRINT = "0720fccddc389f66bd34fe232ad0fc3761e7b1118310afe44c03b12c0e668c5b"
SNAPSHOT_NAME = "treasury"


@dataclass
class PendingConversions:
    received: dict[str, FiatPaymentReceived] = field(default_factory=dict)
    converted: set[str] = field(default_factory=set)
    position: int = 0


def treasury_fingerprint() -> str:
    return hashlib.sha256("\n".join(describe(PendingConversions)).encode()).hexdigest()


def treasury_snapshots(
    store: SnapshotStore, cadence: SnapshotCadence | None = None
) -> SnapshotKeeper:
    return SnapshotKeeper(store, SNAPSHOT_NAME, TREASURY_SCHEMA_VERSION, cadence)


def encode_pending(pending: PendingConversions) -> bytes:
    return encode_framed(
        lambda: codec_for(PendingConversions).encode(pending), TREASURY_SCHEMA_VERSION
    )


def decode_pending(body: bytes) -> PendingConversions:
    """What ``body`` holds; :class:`SnapshotUnreadable` (saying why) if it cannot be read."""
    pending = decode_framed(
        body, TREASURY_SCHEMA_VERSION, "the treasury's state", codec_for(PendingConversions).decode
    )
    assert isinstance(pending, PendingConversions)
    return pending
