"""The relay's lease: one relay publishes, the others wait on it and take over when it dies.

A lease is held by a live process and freed by its death, whatever the death: the kernel drops
an ``flock`` when the holder's file descriptors close (SQLite's store), PostgreSQL drops a
session's advisory lock when its connection ends (PostgreSQL's store). So a ``kill -9`` of
the holder frees it at once, with no expiry to wait for and no clock to trust.
"""

from __future__ import annotations

import fcntl
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

__all__ = ["FileLease", "MemoryLease", "RelayLease", "check_lease_name"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def check_lease_name(name: str) -> str:
    """A lease name becomes part of a file name: lower-case letters, digits, ``-_.``."""
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise ValueError(f"lease name must be 1-64 of [a-z0-9-_.], not starting with '.': {name!r}")
    return name


class RelayLease(ABC):
    """One holder at a time. ``try_acquire`` never blocks; ``held`` re-checks the lease is
    still ours (a holder that lost it must stop at once); ``release`` gives it up."""

    @abstractmethod
    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if this object now holds it."""

    @abstractmethod
    def held(self) -> bool:
        """True while this object holds the lease (checked against the lock's owner)."""

    @abstractmethod
    def release(self) -> None:
        """Give the lease up (nothing if not held); the object can acquire it again."""

    def close(self) -> None:
        self.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class MemoryLease(RelayLease):
    """Within one process (unit tests, the memory store): leases of one name exclude each
    other across instances."""

    _holders: ClassVar[dict[str, int]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "relay"):
        self._name = check_lease_name(name)
        self._held = False

    def try_acquire(self) -> bool:
        with self._guard:
            if self._held:
                return True
            if self._name in self._holders:
                return False
            self._holders[self._name] = id(self)
            self._held = True
            return True

    def held(self) -> bool:
        with self._guard:
            return self._held and self._holders.get(self._name) == id(self)

    def release(self) -> None:
        with self._guard:
            if self._held and self._holders.get(self._name) == id(self):
                del self._holders[self._name]
            self._held = False


class FileLease(RelayLease):
    """An exclusive ``flock`` on ``<db>.<name>.lease`` beside the SQLite database.

    The kernel frees it when the holder's descriptor closes, so also when it is killed. The
    file is never deleted: a holder whose file was replaced would hold a lock nobody else
    sees, so ``held`` also checks the path still names the locked file.
    """

    def __init__(self, db_path: Path | str, name: str = "relay"):
        path = Path(db_path)
        self.path = path.with_name(f"{path.name}.{check_lease_name(name)}.lease")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def held(self) -> bool:
        if self._fd is None:
            return False
        try:
            ours = os.fstat(self._fd)
            named = os.stat(self.path)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (named.st_dev, named.st_ino)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock
