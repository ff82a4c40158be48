"""The launcher's side of supervision: the supervisor process, starting the stack through it,
stopping it first, and what ``hero status`` shows of it.

With ``HERO_SUPERVISE`` on (the default), ``hero up`` does not start the stack's processes
itself: it starts ``python -m infra.supervisor --up``, which starts them (so it is their parent
and sees how each one ends: exit code or signal), writes ``run/up-result.json`` and then
watches them. ``hero up`` reads that result and returns.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hero.config import HeroSettings
from infra._procfs import read_proc, running
from infra._state import ProcessRecord, StackState, SupervisorReport, _atomic_write
from infra.errors import ComponentError, StackError
from infra.models import ComponentStatus, UpReport
from infra.processes import ManagedProcess, settings_env

__all__ = [
    "SupervisorProcess",
    "apply_supervision",
    "own_record",
    "read_up_result",
    "spawn_supervised_up",
    "start_supervisor",
    "stop_supervisor",
    "supervisor_alive",
    "write_up_result",
]

_POLL_S = 0.1
# Beyond HERO_UP_TIMEOUT_S: the supervisor's own start (imports) and its report.
_SLACK_S = 30.0


class SupervisorProcess(ManagedProcess):
    """``python -m infra.supervisor``: with ``up`` it starts the stack first, else it watches
    the running stack's recorded processes. Ready once it wrote ``run/supervisor.json``."""

    name = "supervisor"
    stop_timeout = 10.0

    def __init__(
        self,
        settings: HeroSettings,
        *,
        up: bool = False,
        commands: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(settings.data_dir)
        self.settings = settings
        self.up = up
        self.commands = commands or {}

    @property
    def address(self) -> str | None:
        return None  # it listens nowhere

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "infra.supervisor"]
        if self.up:
            command.append("--up")
        if self.commands:
            command += ["--commands", json.dumps(self.commands)]
        return command

    def _env(self) -> dict[str, str]:
        # Settings through the environment, like every HERO process: /proc/PID/environ is
        # its owner's only, a command line is not.
        env = settings_env(self.settings, super()._env())
        env["HERO_DATA_DIR"] = str(self.data_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _ready(self) -> bool:
        report = SupervisorReport.load(self.data_dir)
        return report is not None and report.pid == self.pid


def own_record(data_dir: Path) -> ProcessRecord:
    """The calling process (the supervisor) as stack.json records it."""
    info = read_proc(os.getpid())
    return ProcessRecord(
        name="supervisor",
        pid=os.getpid(),
        start_ticks=info.start_ticks if info is not None else 0,
        log=str(data_dir / "logs" / "supervisor.log"),
    )


def _result_path(data_dir: Path) -> Path:
    return data_dir / "run" / "up-result.json"


def write_up_result(data_dir: Path, *, report: UpReport | None, error: str | None) -> None:
    payload: dict[str, Any] = {"pid": os.getpid(), "error": error}
    if report is not None:
        payload["report"] = report.model_dump(mode="json")
    _atomic_write(_result_path(data_dir), json.dumps(payload))


def read_up_result(data_dir: Path, pid: int | None) -> dict[str, Any] | None:
    try:
        data = json.loads(_result_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("pid") == pid else None


def spawn_supervised_up(
    settings: HeroSettings, commands: dict[str, list[str]], began: float
) -> UpReport:
    """Start the supervisor with ``--up`` and wait for its result: the UpReport, or its error
    raised as StackError (it has stopped what it started by then)."""
    data_dir = settings.data_dir
    _result_path(data_dir).unlink(missing_ok=True)
    SupervisorReport.remove(data_dir)
    proc = SupervisorProcess(settings, up=True, commands=commands)
    proc.spawn()
    deadline = began + settings.up_timeout_s + _SLACK_S
    try:
        while (result := read_up_result(data_dir, proc.pid)) is None:
            if not proc.is_alive():
                raise StackError(
                    f"hero up failed: the supervisor exited before the stack was up\n"
                    f"{proc.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise StackError("hero up took longer than HERO_UP_TIMEOUT_S")
            time.sleep(_POLL_S)
    except BaseException:
        proc.stop()  # it stops, newest first, what it started
        raise
    finally:
        _result_path(data_dir).unlink(missing_ok=True)
    if result.get("error"):
        proc.stop()
        raise StackError(str(result["error"]))
    return UpReport.model_validate(result["report"])


def start_supervisor(settings: HeroSettings, state: StackState) -> None:
    """A running stack whose supervisor is gone gets a new one (``hero up`` again). It keeps
    the counts of the old one's report; it is not the parent of what it finds running, so the
    first exit of those shows no status."""
    proc = SupervisorProcess(settings)
    proc.spawn()
    state.supervisor = proc.record()
    state.save(settings.data_dir)
    try:
        proc.wait_ready(settings.up_timeout_s)
    except ComponentError:
        proc.kill()
        raise


def supervisor_alive(state: StackState) -> bool:
    record = state.supervisor
    return record is not None and running(record.pid, record.start_ticks)


def stop_supervisor(settings: HeroSettings, state: StackState) -> ComponentStatus | None:
    """Stop the supervisor first, so nothing is started again while the stack stops. Raises
    ComponentError if it survives."""
    record = state.supervisor
    if record is None:
        return None
    proc = SupervisorProcess(settings)
    proc.adopt(record)
    was_running = proc.stop()
    return ComponentStatus(
        name="supervisor",
        state="down",
        pid=record.pid,
        detail="stopped" if was_running else "was not running",
    )


def apply_supervision(
    statuses: list[ComponentStatus], state: StackState, settings: HeroSettings
) -> list[ComponentStatus]:
    """Add the supervisor's counts to each process's status, and its own row."""
    report = SupervisorReport.load(settings.data_dir)
    entries = report.processes if report is not None else {}
    for status in statuses:
        entry = entries.get(status.name)
        if entry is None:
            continue
        status.restarts = entry.restarts
        status.last_exit = entry.last_exit
        status.last_exit_at = entry.last_exit_at
        status.supervision = _supervision_text(entry.state, entry.restart_in_s, entry)
        if entry.state == "crash-looping":
            status.state = "degraded"
            status.detail = _join(
                f"crash-looping: {entry.crashes_in_window} exits in the last minute, "
                f"last {entry.last_exit}",
                status.detail,
            )
    row = _supervisor_row(state, settings, report)
    return [*statuses, row] if row is not None else statuses


def _supervision_text(state: str, restart_in_s: float | None, entry: Any) -> str:
    if state == "restarting" and restart_in_s is not None:
        return f"restarting in {restart_in_s:.1f} s"
    if state == "waiting" and entry.waiting_for:
        return f"waiting for {entry.waiting_for}"
    return str(state)


def _supervisor_row(
    state: StackState, settings: HeroSettings, report: SupervisorReport | None
) -> ComponentStatus | None:
    record = state.supervisor
    if record is None:
        if not settings.supervise or not state.complete:
            return None
        return ComponentStatus(
            name="supervisor",
            state="degraded",
            detail="no supervisor: a crashed process is not started again; run `hero up`",
        )
    if not running(record.pid, record.start_ticks):
        return ComponentStatus(
            name="supervisor",
            state="degraded",
            pid=record.pid,
            detail=f"pid {record.pid} is gone: a crashed process is not started again; "
            f"`hero up` starts a new supervisor (see {record.log})",
        )
    detail = "watching every recorded process"
    if report is not None and report.pid == record.pid:
        restarts = sum(entry.restarts for entry in report.processes.values())
        age = (datetime.now(UTC) - report.updated_at).total_seconds()
        detail = f"watching {len(report.processes)} processes, {restarts} restarts"
        if age > _STALE_S:
            return ComponentStatus(
                name="supervisor",
                state="degraded",
                pid=record.pid,
                detail=f"{detail}; its report is {age:.0f} s old (busy or stuck)",
            )
    return ComponentStatus(name="supervisor", state="up", pid=record.pid, detail=detail)


# A restart waits at most HERO_UP_TIMEOUT_S for health; beyond that a report is stale.
_STALE_S = 120.0


def _join(first: str, second: str | None) -> str:
    return f"{first}; {second}" if second else first
