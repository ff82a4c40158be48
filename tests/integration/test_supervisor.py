"""The supervisor `hero up` starts (issue 16, point 3), on a real stack of the test's own
started by the launcher with ``supervise=True``: kill -9 of each recorded process in turn
(only pids this stack recorded; loopback only) brings it back, `hero status --json` shows the
restart and "SIGKILL"; a command that exits at once is reported crash-looping and its starts
are spaced by the backoff; a dead supervisor shows as degraded and `hero up` starts a new one;
`hero down` after all that leaves no process of the stack alive. The figures are printed
(``-s``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import LocalStack
from infra._procfs import running
from infra._state import ProcessRecord, StackState
from infra.local import restart_order
from tests._engines import Engines, stack_settings
from tests._wait import wait_until
from tests.e2e._cli import hero_json

pytestmark = [pytest.mark.integration]

# The acceptance's bound: a killed process runs again (a new pid, recorded) within 5 s.
_BACK_S = 5.0
# Then ready: a Ray head or the agents (hosts caught up) take longer on a loaded 2-core box.
_READY_S = 90.0


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def supervised(data_dir: Path, engines: Engines) -> Iterator[LocalStack]:
    launcher = LocalStack(stack_settings(data_dir, engines, supervise=True))
    launcher.up()
    try:
        yield launcher
    finally:
        seen = _every_pid_recorded(data_dir)
        launcher.down()
        # Nothing of the stack is left: no process up started, none the supervisor started.
        alive = [f"{r.name} pid {r.pid}" for r in seen if running(r.pid, r.start_ticks)]
        assert not alive, f"left running after hero down: {alive}"


_RECORDS: dict[Path, list[ProcessRecord]] = {}


def _every_pid_recorded(data_dir: Path) -> list[ProcessRecord]:
    """Every record stack.json ever held in this test (old pids included)."""
    _remember(data_dir)
    return _RECORDS.pop(data_dir, [])


def _remember(data_dir: Path) -> StackState:
    state = StackState.load(data_dir)
    assert state is not None
    known = _RECORDS.setdefault(data_dir, [])
    records = [*state.processes.values(), *([state.supervisor] if state.supervisor else [])]
    known += [r for r in records if all(r.pid != k.pid for k in known)]
    return state


def _status(data_dir: Path) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in hero_json("status", data_dir=data_dir)}


def _log(data_dir: Path) -> str:
    """The supervisor's log, for a failure's message."""
    return (data_dir / "logs" / "supervisor.log").read_text()[-4000:]


def _kill_9(record: ProcessRecord) -> None:
    assert running(record.pid, record.start_ticks), f"{record.name} is not running"
    os.kill(record.pid, signal.SIGKILL)


def test_kill_9_of_each_process_is_restarted_and_status_shows_it(
    supervised: LocalStack, data_dir: Path
) -> None:
    figures: list[str] = []
    labels = restart_order(_remember(data_dir).processes)
    for label in labels:
        old = _remember(data_dir).processes[label]
        _kill_9(old)
        killed = time.monotonic()

        def new_record(label: str = label, old: ProcessRecord = old) -> ProcessRecord | None:
            record = _remember(data_dir).processes[label]
            return (
                record
                if record.pid != old.pid and running(record.pid, record.start_ticks)
                else None
            )

        wait_until(new_record, _BACK_S, f"{label} running again")
        back = time.monotonic() - killed

        def ready(label: str = label) -> dict[str, Any] | None:
            rows = _status(data_dir)
            row = rows[label]
            settled = all(r["supervision"] in (None, "running") for r in rows.values())
            return row if row["state"] == "up" and settled else None

        row = wait_until(ready, _READY_S, f"{label} ready again", poll_s=0.5)
        assert row is not None
        figures.append(
            f"{label}: running again after {back:.2f} s, the stack ready after "
            f"{time.monotonic() - killed:.2f} s"
        )
        assert row["restarts"] >= 1, (row, _log(data_dir))
        assert "SIGKILL" in (row["last_exit"] or ""), (row, _log(data_dir))
        assert back <= _BACK_S
    print("\nkill -9 of each supervised process:\n  " + "\n  ".join(figures))
    rows = _status(data_dir)
    assert rows["supervisor"]["state"] == "up", rows["supervisor"]
    assert all(rows[label]["restarts"] >= 1 for label in labels)

    # The supervisor itself killed: status says so; `hero up` starts a new one, counts kept.
    state = _remember(data_dir)
    assert state.supervisor is not None
    _kill_9(state.supervisor)
    wait_until(lambda: _status(data_dir)["supervisor"]["state"] == "degraded", 10, "degraded shown")
    report = supervised.up()
    assert report.already_running
    rows = _status(data_dir)
    assert rows["supervisor"]["state"] == "up", rows["supervisor"]
    assert rows["supervisor"]["pid"] != state.supervisor.pid
    assert all(rows[label]["restarts"] >= 1 for label in labels)


def _exits_on_cue(tmp_path: Path, cue: Path) -> list[str]:
    """The relay's command, except that it exits at once (code 3) while ``cue`` exists."""
    script = tmp_path / "relay_on_cue.py"
    script.write_text(
        "import os, sys\n"
        f"if os.path.exists({str(cue)!r}):\n"
        "    sys.exit(3)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'hero.relay'])\n"
    )
    return [sys.executable, str(script)]


@pytest.mark.embedded_only(reason="about the supervisor's policy, not the engines")
def test_a_crash_loop_is_reported_and_the_backoff_keeps_it_from_spinning(
    tmp_path: Path, data_dir: Path, engines: Engines
) -> None:
    cue = tmp_path / "crash"
    launcher = LocalStack(
        stack_settings(data_dir, engines, supervise=True),
        relay_command=_exits_on_cue(tmp_path, cue),
    )
    launcher.up()
    try:
        cue.touch()
        _kill_9(_remember(data_dir).processes["relay"])
        began = time.monotonic()

        def looping() -> dict[str, Any] | None:
            row = _status(data_dir)["relay"]
            return row if row["supervision"] == "crash-looping" else None

        # SIGKILL, then four starts that exit at once, 0.5 + 1 + 2 + 4 s apart.
        row = wait_until(looping, 40, "the relay reported crash-looping", poll_s=0.5)
        assert row is not None
        took = time.monotonic() - began
        assert row["state"] == "degraded", row
        assert row["last_exit"] == "exited with 3", row
        assert "crash-looping" in row["detail"], row
        assert took >= 0.5 + 1 + 2 + 4, f"five exits in {took:.1f} s: the backoff did not hold"
        restarts = row["restarts"]
        assert 4 <= restarts <= 5, row
        # The next start is 8 s away: over the next 5 s at most one more start.
        watched = time.monotonic()
        wait_until(lambda: time.monotonic() - watched >= 5, 6, "five seconds", poll_s=0.5)
        later = _status(data_dir)["relay"]
        assert later["restarts"] - restarts <= 1, (row, later)
        print(
            f"\ncrash loop: reported after {took:.1f} s and {restarts} restarts; "
            f"{later['restarts']} restarts {time.monotonic() - began:.1f} s after the kill"
        )
        # The cause gone, the next backed-off start brings it back.
        cue.unlink()
        wait_until(
            lambda: _status(data_dir)["relay"]["supervision"] == "running",
            45,
            "the relay back after the loop",
            poll_s=0.5,
        )
    finally:
        seen = _every_pid_recorded(data_dir)
        launcher.down()
    alive = [f"{r.name} pid {r.pid}" for r in seen if running(r.pid, r.start_ticks)]
    assert not alive, f"left running after hero down: {alive}"
