"""The data dir is closed by ``hero up`` (issue 13, item 7): HERO's files only, nothing else."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hero.secretfile import secret_in
from infra._private import make_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_what_an_earlier_run_left_open_is_closed_and_the_users_files_are_not(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "valkey" / "appendonlydir").mkdir(parents=True)
    opened = {
        data / "events.db": 0o644,
        data / "events.db-wal": 0o644,
        data / "treasury.secret": 0o644,
        data / "logs" / "valkey.log": 0o644,
        data / "valkey" / "appendonlydir" / "appendonly.aof.1.incr.aof": 0o644,
    }
    for path, bits in opened.items():
        path.write_text("x")
        os.chmod(path, bits)
    mine = data / "notes.sh"  # the user's, in a data dir they chose
    mine.write_text("echo hi")
    os.chmod(mine, 0o755)
    for directory in (data, data / "logs", data / "valkey", data / "valkey" / "appendonlydir"):
        os.chmod(directory, 0o755)

    make_private(data)

    assert mode(data) == 0o700
    for path in opened:
        assert mode(path) == 0o600, path
    for directory in ("logs", "run", "valkey", "valkey/appendonlydir"):
        assert mode(data / directory) == 0o700, directory
    assert mode(mine) == 0o755


def test_a_secret_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "valkey.secret"
    first = secret_in(path)
    assert len(first) >= 32
    assert mode(path) == 0o600
    assert secret_in(path) == first
