"""Read-only views of /proc and identity-checked signalling.

A pid alone is not an identity: pids are reused. Every record keeps the process start time
(in clock ticks since boot, field 22 of ``/proc/PID/stat``) and every signal is sent only
after checking it, through a pidfd where the kernel has them, so a recycled pid is never hit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcInfo",
    "descendants",
    "iter_procs",
    "read_proc",
    "running",
    "send_signal",
    "session_members",
]

_PROC = Path("/proc")
_DEAD_STATES = frozenset("ZXx")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    start_ticks: int

    @property
    def dead(self) -> bool:
        # A zombie has exited: nothing left to stop, only its parent can reap it.
        return self.state in _DEAD_STATES


def read_proc(pid: int) -> ProcInfo | None:
    """The process with this pid, or None if there is none."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # comm is in parentheses and may itself hold spaces and parentheses: split at the last ')'.
    head, _, tail = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()
    return ProcInfo(
        pid=pid,
        comm=comm,
        state=fields[0],
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        sid=int(fields[3]),
        start_ticks=int(fields[19]),
    )


def iter_procs() -> Iterator[ProcInfo]:
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name))
            if info is not None:
                yield info


def running(pid: int, start_ticks: int) -> bool:
    """True if this very process (pid and start time) exists and has not exited."""
    info = read_proc(pid)
    return info is not None and info.start_ticks == start_ticks and not info.dead


def session_members(sid: int, not_before_ticks: int) -> list[ProcInfo]:
    """Live processes of session ``sid`` started no earlier than its leader did.

    The start-time bound keeps a session id that was recycled after a reboot-free pid wrap
    from matching processes that were never ours.
    """
    return [
        info
        for info in iter_procs()
        if info.sid == sid and info.start_ticks >= not_before_ticks and not info.dead
    ]


def descendants(pid: int, procs: Iterable[ProcInfo] | None = None) -> list[ProcInfo]:
    """Live descendants of ``pid`` (children that left our session are still found here)."""
    table = list(procs) if procs is not None else list(iter_procs())
    children: dict[int, list[ProcInfo]] = {}
    for info in table:
        children.setdefault(info.ppid, []).append(info)
    found: list[ProcInfo] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if not child.dead:
                found.append(child)
            stack.append(child.pid)
    return found


def send_signal(info: ProcInfo, sig: signal.Signals) -> bool:
    """Signal the process described by ``info`` if it is still that process; True if sent."""
    try:
        fd = os.pidfd_open(info.pid)
    except ProcessLookupError:
        return False
    except OSError:
        return _send_by_pid(info, sig)
    try:
        # The pidfd pins the process: once it is open, checking the start time is race-free.
        current = read_proc(info.pid)
        if current is None or current.start_ticks != info.start_ticks:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _send_by_pid(info: ProcInfo, sig: signal.Signals) -> bool:
    current = read_proc(info.pid)
    if current is None or current.start_ticks != info.start_ticks:
        return False
    try:
        os.kill(info.pid, sig)
    except ProcessLookupError:
        return False
    return True
