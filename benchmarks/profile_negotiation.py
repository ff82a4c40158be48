"""benchmarks/negotiation.py with a profile of its two phases (burst and paced), per stack:

    .venv/bin/python benchmarks/profile_negotiation.py [negotiation.py's options]
        [--profile-dir DIR]

* the CPU seconds each process of the stack used during the phases (``/proc``, every
  process this run started, grouped by what it is), with the load average;
* on PostgreSQL, ``pg_stat_activity`` sampled every 50 ms: on average how many of the
  database's client connections waited on a lock, sat ``idle in transaction`` (the server
  waits for its client's next statement, or for the CPU to read it) or ran;
* on PostgreSQL, ``pg_stat_statements`` (calls and time of each statement), when the server
  preloads it (``shared_preload_libraries=pg_stat_statements`` added to the command line in
  ``infra/postgres.py``; not the default, so this part is skipped without it);
* with ``py-spy`` on the PATH or beside this Python (not a dependency: ``pip install
  py-spy``), a wall-clock sample of every thread of each agent host (``--idle``), written as
  collapsed stacks: the ``hero-sink`` thread's time split between its own round trips, the
  log head's lock and an empty queue.

Files go to ``--profile-dir`` (a temporary directory by default), the summaries to stdout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import negotiation
import psycopg

ME = os.getpid()
_SAMPLE_S = 0.05
_KINDS = (
    ("AgentHost", "agent hosts"),
    ("postgres", "postgresql"),
    ("java", "kafka (JVM)"),
    ("tansu", "tansu"),
    ("hero.relay", "relay"),
    ("valkey", "valkey"),
    ("ray", "ray"),
    ("streams.usage", "usage worker"),
    ("hero.gateway", "gateway"),
    ("agents.treasury", "treasury"),
    ("py-spy", "py-spy (the profiler)"),
)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kind(pid: int) -> str:
    if pid == ME:
        return "benchmark driver"
    command = _cmdline(pid)
    return next((name for key, name in _KINDS if key in command), "other: " + command[:40])


def _cpu_seconds() -> dict[int, float]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in [ME, *_descendants(ME)]:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


class _Sampler(threading.Thread):
    """Counts the states of the database's client connections every 50 ms."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.done = threading.Event()
        self.samples = 0
        self.states: Counter[str] = Counter()

    def run(self) -> None:
        while not self.done.wait(_SAMPLE_S):
            rows = self.conn.execute(
                "SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, ''),"
                " left(query, 50) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
                " AND state <> 'idle'"
            ).fetchall()
            self.samples += 1
            for state, wait_type, wait, query in rows:
                if wait_type == "Lock":
                    self.states[f"waiting on a lock: {query}"] += 1
                elif state == "active" and not wait_type:
                    self.states["active, running"] += 1
                else:
                    self.states[f"{state} {wait_type}:{wait}".strip()] += 1


class Profile:
    """Started at the burst phase of a stack, stopped after its paced phase."""

    def __init__(self, out: Path):
        self.out, self.stack = out, ""
        self._started = 0.0
        self._load = 0.0
        self._cpu: dict[int, float] = {}
        self._spies: list[subprocess.Popen[bytes]] = []
        self._sampler: _Sampler | None = None
        self._statements = False

    def start(self, store: Any) -> None:
        self._started, self._load, self._cpu = time.time(), os.getloadavg()[0], _cpu_seconds()
        spy = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        hosts = [pid for pid in _descendants(ME) if "AgentHost" in _cmdline(pid)]
        for i, pid in enumerate(hosts if spy else []):
            out = self.out / f"{self.stack}-host{i}.txt"
            self._spies.append(
                subprocess.Popen(
                    [
                        spy or "",
                        "record",
                        "--idle",
                        "--threads",
                        "--rate",
                        "50",
                        "--format",
                        "raw",
                        "--pid",
                        str(pid),
                        "-o",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        url = getattr(store, "url", "")
        if not url.startswith("postgresql"):
            return
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
                self._statements = True
            except psycopg.Error:
                print("pg_stat_statements is not preloaded: no statement counts", flush=True)
        self._sampler = _Sampler(url)
        self._sampler.start()

    def stop(self) -> None:
        for spy in self._spies:  # py-spy writes its file on SIGINT
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        self._spies = []
        wall = time.time() - self._started
        used: dict[str, float] = {}
        for pid, seconds in _cpu_seconds().items():
            used[_kind(pid)] = used.get(_kind(pid), 0.0) + seconds - self._cpu.get(pid, 0.0)
        lines = [
            f"{self.stack}: {wall:.1f} s of phases, load average {self._load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}; CPU seconds used (cores busy):"
        ]
        lines += [
            f"  {s:7.2f} s ({s / wall:4.2f})  {k}"
            for k, s in sorted(used.items(), key=lambda kv: -kv[1])
            if s > 0.05
        ]
        if self._sampler is not None:
            lines += self._stop_sampler()
        (self.out / f"{self.stack}-profile.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)

    def _stop_sampler(self) -> list[str]:
        sampler, self._sampler = self._sampler, None
        assert sampler is not None
        sampler.done.set()
        sampler.join()
        lines = [f"PostgreSQL client connections, mean over {sampler.samples} samples:"]
        lines += [
            f"  {n / max(sampler.samples, 1):5.2f}  {state}"
            for state, n in sampler.states.most_common(8)
        ]
        if self._statements:
            rows = sampler.conn.execute(
                "SELECT calls, round(total_exec_time::numeric, 1),"
                " left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
                " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat%'"
                " ORDER BY calls DESC LIMIT 15"
            ).fetchall()
            lines.append("statements (calls, total ms, text):")
            lines += [f"  {calls:7} {ms:>10}  {text}" for calls, ms, text in rows]
        sampler.conn.close()
        return lines


def main() -> None:
    argv = sys.argv[1:]
    out = Path(tempfile.mkdtemp(prefix="hero-profile-"))
    if "--profile-dir" in argv:
        at = argv.index("--profile-dir")
        out = Path(argv[at + 1])
        del argv[at : at + 2]
    out.mkdir(parents=True, exist_ok=True)
    profile = Profile(out)
    run_phase, stack_settings = negotiation.run_phase, negotiation.stack_settings

    def settings(stack: str, args: Any, tmp: Path) -> Any:
        profile.stack = stack
        return stack_settings(stack, args, tmp)

    def phase(service: Any, store: Any, args: Any, name: str, rate: float) -> Any:
        if name == "burst":
            profile.start(store)
        try:
            return run_phase(service, store, args, name, rate)
        finally:
            if name == "paced":
                profile.stop()

    negotiation.stack_settings, negotiation.run_phase = settings, phase
    sys.argv = [sys.argv[0], *argv]
    negotiation.main()
    print(f"profile files in {out}")


if __name__ == "__main__":
    main()
