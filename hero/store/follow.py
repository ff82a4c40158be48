"""Reading the log forward from a position, batch by batch: what every follower of the store
(billing, the treasury, read models, the CLI's listings) does to catch up."""

from __future__ import annotations

from collections.abc import Iterator

from hero.store.port import EventStore, RecordedEvent

__all__ = ["next_batch", "recorded_after"]


def recorded_after(
    store: EventStore, position: int = 0, batch: int = 5000
) -> Iterator[RecordedEvent]:
    """Every event committed after ``position``, in log order, read ``batch`` at a time; what is
    committed while the caller iterates is read too."""
    while rows := store.read_all(position + 1, batch):
        yield from rows
        position = rows[-1].position


def next_batch(
    store: EventStore, position: int, batch: int = 5000, wait_s: float = 1.0
) -> list[RecordedEvent]:
    """The next events after ``position``; when there are none yet, wait up to ``wait_s`` for
    one to be committed (woken at once where the store can notify) and read again."""
    rows = store.read_all(position + 1, batch)
    if rows or not store.wait_for_new(position, wait_s):
        return rows
    return store.read_all(position + 1, batch)
