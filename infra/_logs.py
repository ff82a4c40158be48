"""Component log files: open for a child's output, read the tail of the current run."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

__all__ = ["contains", "open_log", "tail"]

_TAIL_BYTES = 64 * 1024


def open_log(path: Path, banner: str) -> tuple[BinaryIO, int]:
    """Open ``path`` for appending, write a banner; returns the file and the run's offset.

    Logs may hold what a process saw (addresses, errors): 0600 in a 0700 directory.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    handle = os.fdopen(fd, "ab", buffering=0)
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
