"""Dead letters by hand: ``hero dlq list`` shows what the consumers set aside on ``hero.dlq``
(the reason, where it came from, when, a preview); ``hero dlq replay`` sends records back to
their source topic, each once (``hero.log.dlq``)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for

if TYPE_CHECKING:
    from hero.log.dlq import StoredDeadLetter

__all__ = ["app", "list_letters", "replay"]

app = typer.Typer(help="Dead letters: list them, replay them.", no_args_is_help=True)

_ID = re.compile(r"[0-9a-f]{16}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_MAX_LIMIT = 100_000


def _bootstrap(data_dir: Path | None) -> str:
    from infra import LocalStack, StackError

    settings = settings_for(data_dir)
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    try:
        return LocalStack(settings).endpoints().kafka_bootstrap
    except StackError as error:
        fail(str(error), code=1)


def _read(bootstrap: str) -> list[StoredDeadLetter]:
    from hero.log.dlq import read_dead_letters

    try:
        return list(asyncio.run(read_dead_letters(bootstrap)))
    except Exception as error:
        fail(f"cannot read the dead letters from {bootstrap}: {error}", code=1)


@app.command("list")
def list_letters(
    topic: Annotated[
        str | None, typer.Option("--topic", help="only dead letters from this source topic")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="the latest N at most")] = 50,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """The dead letters, oldest first: id, when, consumer, reason, source, replayed, preview."""
    if topic is not None and not _TOPIC.fullmatch(topic):
        fail(f"--topic: {topic!r} is not a topic name (letters, digits, '.', '_', '-')")
    if not 1 <= limit <= _MAX_LIMIT:
        fail(f"--limit: {limit} must be between 1 and {_MAX_LIMIT}")
    letters = [
        letter for letter in _read(_bootstrap(data_dir)) if topic in (None, letter.letter.topic)
    ][-limit:]
    if as_json:
        print_json([letter.to_json() for letter in letters])
        return
    if not letters:
        console.print("no dead letters" + (f" from {escape(topic)}" if topic else ""))
        return
    table = Table("id", "failed at", "consumer", "reason", "source", "replayed", "preview")
    for stored in letters:
        letter = stored.letter
        table.add_row(
            stored.id,
            letter.failed_at[:19].replace("T", " "),
            escape(letter.consumer),
            escape(letter.reason),
            escape(f"{letter.topic}[{letter.partition}]@{letter.offset}"),
            "yes" if stored.replayed else "",
            escape(stored.preview()),
        )
    console.print(table)


@app.command("replay")
def replay(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="a dead letter's id (repeat for more)")
    ] = None,
    replay_all: Annotated[
        bool, typer.Option("--all", help="every dead letter not replayed yet")
    ] = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Send dead letters back to their source topic, each once: one replayed before is skipped."""
    from hero.log.dlq import replay_dead_letters

    wanted = list(dict.fromkeys(ids or []))
    if bool(wanted) == replay_all:
        fail("give --id ID (one or more) or --all, not both")
    for letter_id in wanted:
        if not _ID.fullmatch(letter_id):
            fail(f"--id: {letter_id!r} is not a dead letter id (16 hex digits, as listed)")
    bootstrap = _bootstrap(data_dir)
    letters = {letter.id: letter for letter in _read(bootstrap)}
    unknown = [letter_id for letter_id in wanted if letter_id not in letters]
    if unknown:
        fail(f"--id: no dead letter {', '.join(unknown)} on hero.dlq; nothing replayed")
    chosen = [letters[i] for i in wanted] if wanted else list(letters.values())
    try:
        done = asyncio.run(replay_dead_letters(bootstrap, chosen))
    except Exception as error:
        fail(f"cannot replay to {bootstrap}: {error}", code=1)
    skipped = [letter.id for letter in chosen if letter.replayed]
    if as_json:
        print_json({"replayed": done, "already_replayed": skipped})
        return
    console.print(
        f"replayed {len(done)} dead letter{'' if len(done) == 1 else 's'}"
        + (f"; {len(skipped)} already replayed, not sent again" if skipped else "")
    )
    for letter_id in done:
        stored = letters[letter_id]
        console.print(f"  {letter_id} -> {escape(stored.letter.topic)}[{stored.letter.partition}]")
