"""The health file every worker of ``streams`` writes, whichever loop runs it (plain or
Faust): importing it does not import Faust."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hero.log.retry import RetryState

__all__ = ["write_health"]


def write_health(path: Path, retry: RetryState, body: dict[str, Any]) -> None:
    """``run/<name>.health``: ``degraded`` with the reason while the worker waits on a
    dependency, ``ok`` otherwise; written whole (a reader never sees half of it)."""
    waiting = retry.waiting_on
    full = {
        "pid": os.getpid(),
        "updated_at": datetime.now(UTC).isoformat(),
        **body,
        "infra_retries": retry.retries,
        "status": "degraded" if waiting else "ok",
        "reason": waiting,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(full))
    tmp.replace(path)
