"""``hero simulate``: check the scenario, build the fleet, run the twin, write ``report.json``
and ``report.html``.

Nothing is written before the scenario, the fleet it makes and the output place are checked:
a bad scenario leaves no output directory behind.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from hero.domain.clock import ManualClock
from hero.simulate.engine import Twin
from hero.simulate.fleet import build_fleet
from hero.simulate.html import render_html
from hero.simulate.report import build_report, dump_report
from hero.simulate.scenario import MAX_DAYS, ScenarioError, SimScenario
from hero.store import EventStore, MemoryEventStore, SqliteEventStore

__all__ = ["HTML_NAME", "REPORT_NAME", "STORE_NAME", "Simulated", "check_run", "simulate"]

REPORT_NAME = "report.json"
HTML_NAME = "report.html"
STORE_NAME = "events.sqlite"
StoreKind = Literal["memory", "sqlite"]


@dataclass(frozen=True)
class Simulated:
    report: dict[str, Any]
    report_path: Path
    events: int
    wall_s: float
    simulated_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s else 0.0

    @property
    def speed_up(self) -> float:
        return self.simulated_s / self.wall_s if self.wall_s else 0.0


def check_run(days: int, out: Path, store: StoreKind) -> None:
    """The run's days and output place, or :class:`ScenarioError`."""
    if not 1 <= days <= MAX_DAYS:
        raise ScenarioError(f"--days must be in 1..{MAX_DAYS}, got {days}")
    if out.exists() and not out.is_dir():
        raise ScenarioError(f"--out {out} exists and is not a directory")
    if store == "sqlite" and (out / STORE_NAME).exists():
        raise ScenarioError(f"{out / STORE_NAME} exists: a run starts from an empty store")


def _open(store: StoreKind, out: Path, clock: ManualClock) -> EventStore:
    if store == "sqlite":
        return SqliteEventStore(out / STORE_NAME, clock, synchronous="NORMAL")
    return MemoryEventStore(clock)


def simulate(
    scenario: SimScenario,
    *,
    days: int,
    seed: int,
    out: Path,
    store: StoreKind = "memory",
    progress: Console | None = None,
) -> Simulated:
    """Run ``scenario`` for ``days`` simulated days and write ``out/report.json``;
    :class:`ScenarioError` (and nothing written) when the input does not hold."""
    check_run(days, out, store)
    rng = random.Random(seed)
    fleet = build_fleet(scenario, rng)  # may refuse the scenario: before anything is written
    out.mkdir(parents=True, exist_ok=True)
    clock = ManualClock(scenario.start)
    began = time.monotonic()
    with ExitStack() as scope:
        events = _open(store, out, clock)
        scope.callback(events.close)
        twin = Twin(scenario, fleet, events, clock, rng)
        with _settled_heap() as held:
            with _progress(progress, days, events.current_position) as on_day:
                twin.run(days, on_day, on_hour=held)
            report = build_report(twin, days, seed)
        count = events.current_position()
    wall = time.monotonic() - began
    path = out / REPORT_NAME
    path.write_bytes(dump_report(report))
    (out / HTML_NAME).write_text(render_html(report), encoding="utf-8")
    return Simulated(report, path, count, wall, days * 86400.0)


@contextmanager
def _settled_heap() -> Iterator[Callable[[int], None]]:
    """Keep the cyclic garbage collector off what the run has built so far: the store's rows
    and the models' state only grow, and scanning them again and again was a fifth of the
    twin's time at 1,000 farms, more each simulated day. The returned call (made each
    simulated hour) freezes what exists; the collector runs less often; both are undone at
    the end."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield lambda _hour: gc.freeze()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class _progress:
    """Simulated day and events/s on ``console`` (stderr), or nothing."""

    def __init__(self, console: Console | None, days: int, events: Callable[[], int]):
        self._console, self._days, self._events = console, days, events
        self._bar: Progress | None = None
        self._began = time.monotonic()

    def __enter__(self) -> Any:
        if self._console is None:
            return lambda _day: None
        self._bar = Progress(
            TextColumn("simulated day {task.completed:.0f}/{task.total:.0f}"),
            BarColumn(),
            TextColumn("{task.fields[rate]}"),
            console=self._console,
            transient=False,
        )
        task = self._bar.add_task("simulate", total=self._days, rate="")
        self._bar.start()
        bar = self._bar

        def on_day(day: int) -> None:
            elapsed = max(time.monotonic() - self._began, 1e-9)
            rate = (
                f"{self._events() / elapsed:,.0f} events/s, {day * 86400 / elapsed:,.0f}x real time"
            )
            bar.update(task, completed=day, rate=rate)

        return on_day

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.task_ids[0], completed=self._days)
            self._bar.stop()
