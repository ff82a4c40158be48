"""The stack's state file (``<data_dir>/run/stack.json``) and the lock that serialises up/down."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from infra.errors import StackError

__all__ = [
    "ProcessRecord",
    "StackState",
    "SupervisedProcess",
    "SupervisorReport",
    "load_ports",
    "save_ports",
    "stack_lock",
]

STATE_VERSION = 1


class ProcessRecord(BaseModel):
    """One process we started: enough to find it again (pid + start time) and to probe it."""

    name: str
    pid: int
    start_ticks: int = Field(description="start time in clock ticks since boot (pid identity)")
    address: str | None = None
    port: int | None = None
    log: str
    extra: dict[str, str] = Field(default_factory=dict)


class StackState(BaseModel):
    version: int = STATE_VERSION
    data_dir: str
    launcher_pid: int
    started_at: datetime
    complete: bool = False
    seconds: float | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    processes: dict[str, ProcessRecord] = Field(default_factory=dict)
    external: dict[str, str] = Field(default_factory=dict)
    supervisor: ProcessRecord | None = Field(
        default=None, description="the supervisor watching ``processes`` (not one of them)"
    )

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "run" / "stack.json"

    @classmethod
    def load(cls, data_dir: Path) -> StackState | None:
        path = cls.path(data_dir)
        try:
            raw = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise StackError(
                f"{path} is unreadable ({exc.error_count()} errors); "
                "stop the processes it lists by hand, then delete it"
            ) from exc

    def save(self, data_dir: Path) -> None:
        _atomic_write(self.path(data_dir), self.model_dump_json(indent=2))

    @classmethod
    def remove(cls, data_dir: Path) -> None:
        cls.path(data_dir).unlink(missing_ok=True)


class SupervisedProcess(BaseModel):
    """What the supervisor knows of one recorded process."""

    state: Literal["running", "starting", "restarting", "waiting", "crash-looping"] = "running"
    pid: int | None = None
    restarts: int = 0
    crashes_in_window: int = 0
    last_exit: str | None = Field(
        default=None, description="exit code or signal: 'killed by SIGKILL', 'exited with 1'"
    )
    last_exit_at: datetime | None = None
    restart_in_s: float | None = Field(
        default=None, description="seconds until the next start, while restarting"
    )
    waiting_for: str | None = Field(default=None, description="a dead dependency it waits on")


class SupervisorReport(BaseModel):
    """``<data_dir>/run/supervisor.json``, rewritten by the supervisor on every change."""

    pid: int
    updated_at: datetime
    processes: dict[str, SupervisedProcess] = Field(default_factory=dict)

    @staticmethod
    def path(data_dir: Path) -> Path:
        return data_dir / "run" / "supervisor.json"

    @classmethod
    def load(cls, data_dir: Path) -> SupervisorReport | None:
        """The last report, or None if there is none or it cannot be read (a status must
        still answer then)."""
        try:
            return cls.model_validate_json(cls.path(data_dir).read_text())
        except (OSError, ValidationError):
            return None

    def save(self, data_dir: Path) -> None:
        _atomic_write(self.path(data_dir), self.model_dump_json(indent=2))

    @classmethod
    def remove(cls, data_dir: Path) -> None:
        cls.path(data_dir).unlink(missing_ok=True)


def load_ports(data_dir: Path) -> dict[str, int]:
    """Ports chosen by an earlier ``up``: reused when still free, so addresses stay stable."""
    path = data_dir / "run" / "ports.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}


def save_ports(data_dir: Path, ports: dict[str, int]) -> None:
    _atomic_write(data_dir / "run" / "ports.json", json.dumps(ports, indent=2, sort_keys=True))


@contextlib.contextmanager
def stack_lock(data_dir: Path, wait: float) -> Iterator[None]:
    """Exclusive lock on the data dir's run state, so two launchers never race.

    A second ``up`` waits for the first one (then finds the stack running) rather than failing.
    """
    path = data_dir / "run" / "stack.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"{data_dir} is busy: another `hero up` or `hero down` "
                        f"has held it for more than {wait:.0f} s"
                    ) from exc
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.replace(path)
