"""Run the installed ``hero`` command as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hero.config import HeroSettings
from tests._engines import provide_store

HERO = shutil.which("hero", path=str(Path(sys.executable).parent)) or "hero"


def hero(
    *args: str,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if data_dir is not None:
        provide_store(data_dir)
        full_env["HERO_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [HERO, *args], capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def store_url(data_dir: Path) -> str:
    """The store a ``hero`` pointed at ``data_dir`` uses (provided first: see provide_store)."""
    provide_store(data_dir)
    return HeroSettings(data_dir=data_dir).effective_store_url


def hero_json(*args: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> Any:
    result = hero(*args, "--json", data_dir=data_dir, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


@contextmanager
def stack_up(data_dir: Path) -> Iterator[Path]:
    """``hero up`` on ``data_dir`` for the block, then ``hero down``; both must succeed."""
    up = hero("up", data_dir=data_dir)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        yield data_dir
    finally:
        down = hero("down", data_dir=data_dir)
        assert down.returncode == 0, down.stderr + down.stdout
