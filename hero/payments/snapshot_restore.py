"""The newest readable snapshot of a payments follower (billing, the treasury), decoded."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hero.model.snapshot import SnapshotUnreadable
from hero.store import Snapshot, SnapshotKeeper

__all__ = ["newest_readable"]

_T = TypeVar("_T")


def newest_readable(
    keeper: SnapshotKeeper, at_most: int, decode: Callable[[bytes], _T]
) -> tuple[Snapshot, _T] | None:
    """The newest snapshot at or before ``at_most`` and what ``decode`` makes of it; None
    when there is none or it cannot be read (recorded on the keeper: the follower replays)."""
    found = keeper.newest(at_most)
    if found is None:
        return None
    try:
        return found, decode(found.body)
    except SnapshotUnreadable as error:
        keeper.unreadable(found, str(error))
        return None
