"""The market state as bytes, for a snapshot (:mod:`hero.store.snapshots`), and back.

A body is ``HMS1`` + the state's format version (4 bytes, big-endian) + the BLAKE2b-256
digest of the rest + the state as JSON (the codec of :mod:`hero.model._codec`, compiled from
:class:`~hero.model.state.MarketState`'s type hints). A body whose digest, version or shape is
wrong raises :class:`SnapshotUnreadable`: a follower then replays the whole log, it never
loads a wrong state.

:data:`MODEL_SCHEMA_VERSION` names the shape of the state; :data:`MODEL_FINGERPRINT` is the
digest of that shape (every type the state reaches, with its fields), pinned here so that a
change to the state fails ``tests/unit/test_model_snapshot.py`` until the version is bumped
and the fingerprint updated with it. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic_core import to_json

from hero.model.codec import Shape, codec_for, describe
from hero.model.gcpause import collections_paused
from hero.model.state import MarketState

__all__ = [
    "MODEL_FINGERPRINT",
    "MODEL_SCHEMA_VERSION",
    "SnapshotUnreadable",
    "decode_framed",
    "decode_state",
    "encode_framed",
    "encode_state",
    "frame",
    "state_fingerprint",
    "unframe",
]

#: The format of the state a body holds; bump it with :data:`MODEL_FINGERPRINT`.
MODEL_SCHEMA_VERSION = 1
#: :func:`state_fingerprint` of the state this version stands for.
MODEL_FINGERPRINT = "e42ce10a54222f4dd92791dc28545dfaf6836d1d9cc1ae5161e24c14ba43e5b3"

_T = TypeVar("_T")

_MAGIC = b"HMS1"
_DIGEST = 32
_HEADER = len(_MAGIC) + 4 + _DIGEST


class SnapshotUnreadable(Exception):
    """A snapshot's body cannot be loaded; the message says why."""


def state_fingerprint() -> str:
    """The digest of the state's shape: every type it reaches, with its fields."""
    shape = "\n".join(describe(MarketState))
    return hashlib.sha256(shape.encode()).hexdigest()


def frame(payload: bytes, version: int) -> bytes:
    """``payload`` behind the header: magic, ``version`` and the payload's digest."""
    digest = hashlib.blake2b(payload, digest_size=_DIGEST).digest()
    return _MAGIC + version.to_bytes(4, "big") + digest + payload


def unframe(body: bytes, version: int) -> bytes:
    """The payload of ``body``, checked: its magic, its ``version``, its digest."""
    if len(body) < _HEADER or not body.startswith(_MAGIC):
        raise SnapshotUnreadable("not a snapshot body (no header: truncated or garbage)")
    found = int.from_bytes(body[4:8], "big")
    if found != version:
        raise SnapshotUnreadable(
            f"the body is of format version {found}, this code reads {version}"
        )
    payload = body[_HEADER:]
    if hashlib.blake2b(payload, digest_size=_DIGEST).digest() != body[8:_HEADER]:
        raise SnapshotUnreadable("the body's digest does not match: corrupt or truncated")
    return payload


def encode_framed(encode: Callable[[], Any], version: int) -> bytes:
    """The tree ``encode`` builds, as JSON behind the header of format ``version``."""
    with collections_paused():
        # the same bytes as json.dumps(separators=(",", ":"), ensure_ascii=False), in Rust
        payload = to_json(encode())
    return frame(payload, version)


def decode_framed(body: bytes, version: int, what: str, decode: Callable[[Any], _T]) -> _T:
    """What ``decode`` makes of the JSON in ``body``; :class:`SnapshotUnreadable` naming
    ``what`` (and saying why) if it cannot be read."""
    payload = unframe(body, version)
    try:
        with collections_paused():
            return decode(json.loads(payload))
    except (Shape, ValueError, TypeError, KeyError, ArithmeticError) as e:
        raise SnapshotUnreadable(f"{what} does not decode: {e}") from e


def encode_state(state: MarketState) -> bytes:
    return encode_framed(lambda: codec_for(MarketState).encode(state), MODEL_SCHEMA_VERSION)


def decode_state(body: bytes) -> MarketState:
    """The state in ``body``; :class:`SnapshotUnreadable` (saying why) if it cannot be read."""
    state = decode_framed(body, MODEL_SCHEMA_VERSION, "the state", codec_for(MarketState).decode)
    assert isinstance(state, MarketState)
    return state
