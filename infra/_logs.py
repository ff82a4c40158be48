"""Component log files: open for a child's output, read the tail of the current run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

__all__ = ["contains", "open_log", "tail"]

_TAIL_BYTES = 64 * 1024


def open_log(path: Path, banner: str) -> tuple[BinaryIO, int]:
    """Open ``path`` for appending, write a banner; returns the file and the run's offset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab", buffering=0)
    offset = handle.tell()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    handle.write(f"=== {stamp} hero: {banner} ===\n".encode())
    return handle, offset


def tail(path: Path, lines: int = 25, *, since: int = 0) -> str:
    """The last ``lines`` lines written at or after byte offset ``since``."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(since, size - _TAIL_BYTES)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def contains(path: Path, needle: str, *, since: int = 0) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            return needle.encode() in handle.read()
    except OSError:
        return False
