"""``hero store migrate``: bring the event store's schema up to date."""

from __future__ import annotations

import typer

from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for
from hero.config import mask_url
from hero.store import StoreError, is_postgres_url, migrate

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="The event store itself.")


@app.command("migrate")
def migrate_command(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Apply the versioned schema files the store lacks (PostgreSQL); idempotent. `hero up`
    runs it; SQLite makes its tables itself."""
    url = settings_for(data_dir).effective_store_url
    applied: list[str] = []
    if is_postgres_url(url):
        try:
            applied = migrate(url)
        except StoreError as error:
            fail(str(error), code=1)
    if as_json:
        print_json({"store_url": mask_url(url), "applied": applied})
        return
    if not is_postgres_url(url):
        console.print(f"{mask_url(url)}: SQLite makes its tables itself; nothing to migrate")
    elif applied:
        console.print(f"{mask_url(url)}: applied {', '.join(applied)}")
    else:
        console.print(f"{mask_url(url)}: up to date")
