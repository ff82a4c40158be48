"""Stop a process we started, with everything it started, by pid and session only.

Each server is started as the leader of a new session (``start_new_session=True``), so its
session id is its pid. Linux keeps a pid number allocated while any process still uses it as
a session or group id, so processes in session ``pid`` are ours as long as the pid is not
held by a different process now. Nothing here matches processes by name.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from infra._procfs import ProcInfo, descendants, iter_procs, read_proc, send_signal

__all__ = ["process_tree", "stop_tree"]

_POLL_S = 0.05
_KILL_WAIT_S = 5.0


def process_tree(pid: int, start_ticks: int) -> list[ProcInfo]:
    """The live processes of the tree we started as ``pid``: its session and descendants."""
    procs = list(iter_procs())
    holder = next((info for info in procs if info.pid == pid), None)
    if holder is not None and holder.start_ticks != start_ticks:
        # The pid now belongs to someone else, hence no process of ours pins it any more.
        return []
    tree = {
        info.pid: info
        for info in procs
        if info.sid == pid and info.start_ticks >= start_ticks and not info.dead
    }
    if holder is not None and not holder.dead:
        tree[pid] = holder
        tree.update((info.pid, info) for info in descendants(pid, procs))
    return list(tree.values())


def stop_tree(
    pid: int,
    start_ticks: int,
    *,
    timeout: float,
    graceful: bool = True,
    reap: Callable[[], object] = lambda: None,
) -> list[ProcInfo]:
    """SIGTERM the leader (its helpers once it is gone), SIGKILL what is left after ``timeout``.

    ``reap`` lets the parent collect its zombie child. Returns the survivors (normally none).
    """
    if graceful:
        _terminate(pid, start_ticks, timeout, reap)
    survivors = process_tree(pid, start_ticks)
    for info in survivors:
        send_signal(info, signal.SIGKILL)
    return _wait_gone(pid, start_ticks, _KILL_WAIT_S, reap) if survivors else []


def _terminate(pid: int, start_ticks: int, timeout: float, reap: Callable[[], object]) -> None:
    tree = process_tree(pid, start_ticks)
    leader = next((info for info in tree if info.pid == pid), None)
    # The leader shuts its own helpers down in order (Ray's does); signal only it at first.
    for info in [leader] if leader is not None else tree:
        send_signal(info, signal.SIGTERM)
    helpers_signalled = leader is None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        tree = process_tree(pid, start_ticks)
        if not tree:
            return
        if not helpers_signalled and read_proc_alive(pid, start_ticks) is None:
            for info in tree:
                send_signal(info, signal.SIGTERM)
            helpers_signalled = True
        time.sleep(_POLL_S)


def _wait_gone(
    pid: int, start_ticks: int, timeout: float, reap: Callable[[], object]
) -> list[ProcInfo]:
    deadline = time.monotonic() + timeout
    while True:
        reap()
        tree = process_tree(pid, start_ticks)
        if not tree or time.monotonic() >= deadline:
            return tree
        time.sleep(_POLL_S)


def read_proc_alive(pid: int, start_ticks: int) -> ProcInfo | None:
    info = read_proc(pid)
    if info is None or info.start_ticks != start_ticks or info.dead:
        return None
    return info
