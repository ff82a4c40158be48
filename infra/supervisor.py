"""The supervisor: ``python -m infra.supervisor [--up]``, started by ``hero up``.

It watches every process ``run/stack.json`` records -- whatever they are: it knows no
component by name; :meth:`LocalStack.restart` starts one again as ``up`` did (same command,
port, data dir) and :func:`infra.local.restart_order` puts dependencies first. A process found
dead is started again after a capped exponential backoff (:mod:`infra.supervisor_policy`);
five exits within a minute are a crash loop, logged and reported ``crash-looping`` (the
backoff keeps it from spinning). Its findings go to ``run/supervisor.json`` for ``hero
status``. It exits on SIGTERM (``hero down`` stops it first) or once stack.json is gone or
names another supervisor. It listens on nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import FrameType

from hero.config import HeroSettings
from infra._state import ProcessRecord, StackState, SupervisedProcess, SupervisorReport
from infra._supervision import own_record, write_up_result
from infra.errors import ComponentError, StackError
from infra.local import LocalStack, is_dependency, restart_order
from infra.processes import ManagedProcess
from infra.supervisor_policy import Backoff, RestartPolicy

__all__ = ["Supervisor", "exit_reason", "main"]

log = logging.getLogger("hero.supervisor")

_POLL_S = 0.2
_ADOPT_WAIT_S = 10.0
# How long a dead child's last threads may take to go, so its exit status can be read.
_REAP_WAIT_S = 5.0


def exit_reason(proc: ManagedProcess) -> str:
    """'killed by SIGKILL', 'exited with 3', or why it cannot be told."""
    code = proc.exit_status(wait=_REAP_WAIT_S)
    if code is None:
        return "exited (status unseen: not started by this supervisor)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


class Supervisor:
    """One pass (:meth:`step`) checks every recorded process; :meth:`run` repeats it."""

    def __init__(
        self,
        stack: LocalStack,
        pid: int,
        *,
        children: Iterable[ManagedProcess] = (),
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.pid = pid
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.data_dir = stack.data_dir
        self.handles: dict[str, ManagedProcess] = {proc.label: proc for proc in children}
        self.backoff: dict[str, Backoff] = {}
        self.entries: dict[str, SupervisedProcess] = {}
        self.due: dict[str, float] = {}
        # Started again, not ready yet: when, and until when it may take.
        self.starting: dict[str, tuple[float, float]] = {}
        self._inherit(SupervisorReport.load(self.data_dir))

    def _inherit(self, previous: SupervisorReport | None) -> None:
        # A supervisor started again keeps its predecessor's counts: `hero status` goes on.
        for label, entry in (previous.processes if previous else {}).items():
            self.entries[label] = entry.model_copy(update={"state": "running"})
            self.backoff[label] = Backoff(self.policy, restarts=entry.restarts)

    def run(self) -> None:
        # Started on a running stack, the launcher records us just after the spawn.
        deadline = self.clock() + _ADOPT_WAIT_S
        while not self._mine(StackState.load(self.data_dir)) and self.clock() < deadline:
            time.sleep(_POLL_S)
        while (state := StackState.load(self.data_dir)) is not None and self._mine(state):
            self.step(state)
            time.sleep(_POLL_S)
        log.info("stack.json is gone or names another supervisor: exiting")

    def _mine(self, state: StackState | None) -> bool:
        return (
            state is not None
            and state.supervisor is not None
            and state.supervisor is not None
            and state.supervisor.pid == self.pid
        )

    def step(self, state: StackState) -> None:
        dead: list[str] = []
        for label in restart_order(state.processes):
            if not self._check(label, state, dead) and is_dependency(label):
                dead.append(label)
        for label in list(self.entries):
            if label not in state.processes:
                del self.entries[label]
        self.report()

    def _check(self, label: str, state: StackState, dead: list[str]) -> bool:
        """True if ``label`` is alive and (when we restarted it) ready after this look."""
        record = state.processes[label]
        proc = self._handle(label, record)
        entry = self.entries.setdefault(label, SupervisedProcess())
        backoff = self.backoff.setdefault(label, Backoff(self.policy))
        now = self.clock()
        if label in self.starting:
            if self._came_back(label, proc, entry, now):
                return True
            if proc.is_alive():
                return False
        if proc.is_alive():
            backoff.running(now)
            entry.state, entry.pid, entry.restart_in_s, entry.waiting_for = (
                "running", record.pid, None, None,
            )  # fmt: skip
            entry.crashes_in_window = backoff.crashes_in_window(now)
            return True
        if label not in self.due:
            self._crashed(label, proc, entry, backoff, now)
        entry.crashes_in_window = backoff.crashes_in_window(now)
        looping = backoff.crash_looping(now)
        if dead:
            # A dependency is down: starting this now would only crash it again.
            entry.state, entry.waiting_for = ("crash-looping" if looping else "waiting"), dead[0]
            return False
        entry.waiting_for = None
        if now < self.due[label]:
            entry.state = "crash-looping" if looping else "restarting"
            entry.restart_in_s = round(self.due[label] - now, 1)
            return False
        self._restart(label, entry, backoff, now)
        return False

    def _came_back(
        self, label: str, proc: ManagedProcess, entry: SupervisedProcess, now: float
    ) -> bool:
        """A process we started again: ready now (True), still starting, or given up on."""
        began, deadline = self.starting[label]
        if not proc.is_alive():
            del self.starting[label]
            return False
        if proc.is_healthy():
            del self.starting[label]
            try:
                self.stack.restarted(label, proc)
            except (StackError, ComponentError) as exc:
                log.error("%s is back but not usable: %s", label, exc)
            log.info("%s is back as pid %s, ready after %.1f s", label, proc.pid, now - began)
            entry.state, entry.restart_in_s = "running", None
            return True
        if now >= deadline:
            del self.starting[label]
            log.error("%s (pid %s) not ready after %.0f s: killed", label, proc.pid, now - began)
            proc.kill()  # the next look finds it dead and starts it again, backed off
            return False
        entry.state = "starting"
        return False

    def _handle(self, label: str, record: ProcessRecord) -> ManagedProcess:
        held = self.handles.get(label)
        if held is not None and held.pid == record.pid:
            return held
        # Started by someone else (a launcher's respawn, an earlier supervisor): found by pid.
        self.handles[label] = self.stack.process(label, record)
        self.starting.pop(label, None)
        return self.handles[label]

    def _crashed(
        self,
        label: str,
        proc: ManagedProcess,
        entry: SupervisedProcess,
        backoff: Backoff,
        now: float,
    ) -> None:
        delay = backoff.crashed(now)
        self.due[label] = now + delay
        entry.last_exit = exit_reason(proc)
        entry.last_exit_at = datetime.now(UTC)
        entry.restart_in_s = delay
        if backoff.crash_looping(now):
            log.error(
                "%s is crash-looping: %d exits within %.0f s, last %s; next start in %.1f s",
                label,
                backoff.crashes_in_window(now),
                self.policy.loop_window_s,
                entry.last_exit,
                delay,
            )
        else:
            log.warning(
                "%s (pid %s) %s; starting it again in %.1f s",
                label,
                proc.pid,
                entry.last_exit,
                delay,
            )

    def _restart(self, label: str, entry: SupervisedProcess, backoff: Backoff, now: float) -> None:
        del self.due[label]
        try:
            proc = self.stack.restart(label)
        except (StackError, ComponentError) as exc:
            log.error("%s could not be started again: %s", label, exc)
            self._crashed(label, self.handles[label], entry, backoff, self.clock())
            entry.last_exit = f"could not start: {exc}"
            return
        self.handles[label] = proc
        self.starting[label] = (now, now + self.stack.settings.up_timeout_s)
        backoff.started(now)
        entry.restarts, entry.pid, entry.state = backoff.restarts, proc.pid, "starting"
        entry.restart_in_s = None
        log.info("%s started again as pid %s (restart %d)", label, proc.pid, backoff.restarts)

    def report(self) -> None:
        SupervisorReport(
            pid=self.pid, updated_at=datetime.now(UTC), processes=dict(self.entries)
        ).save(self.data_dir)


def _on_term(signum: int, _frame: FrameType | None) -> None:
    # Raised, not flagged: it ends a wait on the stack's lock or on a start at once. `hero
    # down` holds that lock while it stops us, so we are never inside spawn-and-record then.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.supervisor")
    parser.add_argument("--up", action="store_true", help="start the stack first")
    parser.add_argument("--commands", default="{}", help="JSON: the launcher's custom commands")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _on_term)
    settings = HeroSettings()
    commands = json.loads(args.commands)
    stack = LocalStack(settings, **{f"{name}_command": cmd for name, cmd in commands.items()})
    me = own_record(settings.data_dir)
    if args.up:
        stack.supervisor_record = me
        try:
            up_report = stack.start_here(time.monotonic())
        except StackError as exc:
            write_up_result(settings.data_dir, report=None, error=str(exc))
            return 1
    supervisor = Supervisor(stack, me.pid, children=stack.started)
    supervisor.report()
    if args.up:
        write_up_result(settings.data_dir, report=up_report, error=None)
    log.info("watching %s", settings.data_dir)
    supervisor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
