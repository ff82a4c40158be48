"""The data dir is its owner's alone: 0700 directories, 0600 files, secrets made once.

The store, Valkey's append-only file, the logs and the secrets all live under the data dir.
``hero up`` closes what an earlier run (or a CLI command, under the user's umask) left open,
and starts every process with umask 077 so that what they create is private too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "PRIVATE_UMASK", "make_private"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077

#: Directories closed with everything in them (what a process wrote before umask 077 was set).
_DEEP = ("logs", "run", "valkey")
#: Closed themselves only: Ray's session files are many, and the 0700 directory hides them.
_SHALLOW = ("ray",)
#: HERO's own files at the top of the data dir (the store and its companions, the secrets);
#: anything else there is the user's and is left as it is.
_FILES = ("events.db*", "*.secret")


def make_private(data_dir: Path) -> None:
    """The data dir 0700; HERO's files in it 0600, its directories 0700 (links left alone)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    info = data_dir.stat()
    # Given to the embedded PostgreSQL's service group (infra/postgres.py): it may pass
    # through to its own directory (search bit only), so that bit stays.
    shared = info.st_gid != os.getgid() and info.st_uid == os.getuid()
    os.chmod(data_dir, PRIVATE_DIR | (info.st_mode & stat.S_IXGRP if shared else 0))
    for name in _DEEP:  # made here, so the launcher's later mkdir(exist_ok) keeps them 0700
        (data_dir / name).mkdir(mode=PRIVATE_DIR, exist_ok=True)
    for name in (*_DEEP, *_SHALLOW):
        _close(data_dir / name)
    for pattern in _FILES:
        for path in data_dir.glob(pattern):
            _close(path)
    for name in _DEEP:
        directory = data_dir / name
        if directory.is_dir() and not directory.is_symlink():
            for path in directory.rglob("*"):
                _close(path)


def _close(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if info.st_uid != os.getuid():
        return  # not ours to change; the 0700 data dir above it still hides it
    if stat.S_ISDIR(info.st_mode):
        os.chmod(path, PRIVATE_DIR)
    elif stat.S_ISREG(info.st_mode):
        os.chmod(path, PRIVATE_FILE)
