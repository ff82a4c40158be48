"""Secrets HERO makes for itself in the data dir (the gateway's, the treasury's, Valkey's
password): made once, readable by their owner only, the same for every process that asks.

README, "Closed by default": the data dir is 0700 and its secrets 0600.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

__all__ = ["SECRET_MODE", "secret_in"]

SECRET_MODE = 0o600


def secret_in(path: Path, nbytes: int = 32) -> str:
    """The secret in ``path``, made (0600) if missing. Written aside and linked into place, so
    two processes or threads starting at once agree on one secret and neither ever reads a
    half-written file."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(nbytes))
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    os.chmod(path, SECRET_MODE)
    return path.read_text().strip()
