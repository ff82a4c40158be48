"""Pages of the list endpoints: a ``limit`` and an opaque ``cursor``. Pure; no I/O.

The cursor is the last id a page returned, with the list it came from, as unpadded URL-safe
base64 of a small JSON object. Documents are listed by id, so the next page starts strictly
after that id: a document added or removed between two pages never shifts the others (no
repeat, no skip of what was there throughout). A cursor is opaque to clients; it is checked
whole when it comes back, and one of another list is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_CURSOR",
    "MAX_LIMIT",
    "BadCursor",
    "Page",
    "decode_cursor",
    "encode_cursor",
    "page_of",
]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Characters a cursor may have: one names an id of at most a few hundred characters.
MAX_CURSOR = 1200
_CURSOR = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CURSOR}}}")
_MAX_ID = 400

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor this gateway did not hand out for this list."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(listing: str, last_id: str) -> str:
    raw = json.dumps({"l": listing, "a": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(listing: str, cursor: str) -> str:
    """The id a page of ``listing`` starts after, or :class:`BadCursor` saying what is wrong."""
    if not _CURSOR.fullmatch(cursor):
        raise BadCursor(f"a cursor is 1-{MAX_CURSOR} URL-safe base64 characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body: Any = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadCursor("not a cursor this gateway handed out") from None
    if not isinstance(body, dict) or set(body) != {"l", "a"}:
        raise BadCursor("not a cursor this gateway handed out")
    after = body["a"]
    if not isinstance(after, str) or not 0 < len(after) <= _MAX_ID:
        raise BadCursor("not a cursor this gateway handed out")
    if body["l"] != listing:
        raise BadCursor(f"this cursor belongs to another list, not {listing}")
    return after


def page_of(
    listing: str,
    items: Sequence[T],
    id_of: Callable[[T], str],
    *,
    limit: int,
    after: str | None,
) -> Page[T]:
    """The ``limit`` items after id ``after`` of ``items`` (sorted by id), and the cursor of
    the next page (None on the last one)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_LIMIT}")
    rest = [item for item in items if after is None or id_of(item) > after]
    page = rest[:limit]
    more = len(rest) > limit
    return Page(page, encode_cursor(listing, id_of(page[-1])) if more else None)
