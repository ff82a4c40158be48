"""What every command shares: the data-dir option, settings, and printing.

Public because the demo (hero.demo) prints and fails the same way as the commands do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape

from hero.config import HeroSettings
from hero.store import EventStore, PoisonRow, RecordedEvent
from hero.store.as_of import AsOfError, LogCut, resolve_as_of

__all__ = [
    "AsJson",
    "DataDir",
    "checked_id",
    "console",
    "errors",
    "fail",
    "print_json",
    "settings_for",
    "warn_skipped",
]

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="HERO_DATA_DIR",
        help="Where the embedded stack keeps its data, logs and pids [default: ./.hero]",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="POSITION|TIME",
        help="The state as it was at a log position, or at an ISO-8601 time with its zone"
        " (e.g. 2026-11-30T23:59:59Z).",
        show_default=False,
    ),
]


def settings_for(data_dir: Path | None) -> HeroSettings:
    return HeroSettings(data_dir=data_dir) if data_dir is not None else HeroSettings()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def warn_skipped(row: RecordedEvent, error: PoisonRow) -> None:
    """A listing steps over a row it cannot read and says so on stderr, once per row: the
    rest of the listing is still right, and the operator learns where the bad row is."""
    errors.print(
        f"[yellow]warning:[/] skipped the unreadable event at position {row.position}"
        f" (stream {escape(repr(row.stream))}, {escape(error.reason)});"
        " `hero events skipped` lists the rows the followers skipped",
        soft_wrap=True,
    )


def cut_to(store: EventStore, as_of: str | None) -> EventStore:
    """``store`` as of ``as_of`` (the whole store for None); a bad as-of exits 2 saying why.
    Which moment was read goes to stderr, so ``--json`` prints the same shape as ever."""
    if as_of is None:
        return store
    try:
        resolved = resolve_as_of(store, as_of)
    except AsOfError as error:
        fail(escape(f"--as-of: {error}"))
    errors.print(f"[dim]{escape(resolved.describe())}[/]")
    return LogCut(store, resolved.position)


def checked_id(kind: Any) -> Callable[[str | None], str | None]:
    """A typer callback refusing an id that ``kind`` (``schemas.ids``) refuses: exit 2 naming
    the argument and the limit, before anything is read or written."""
    adapter: TypeAdapter[str] = TypeAdapter(kind)

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return adapter.validate_python(value)
        except ValidationError as error:
            raise typer.BadParameter(error.errors()[0]["msg"]) from None

    return check
