"""``hero events skipped``: the rows of the store that a follower could not decode and stepped
over (billing, the treasury, the read models, the event streams, the agent hosts), with why.

They are kept in the store itself, once per follower and position; Kafka consumers park their
undecodable records on ``hero.dlq`` instead.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from hero.cli.common import AsJson, DataDir, console, print_json
from hero.cli.market import opened_store

__all__ = ["skipped"]


def skipped(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """List the rows the store's followers could not read and skipped, with the reason."""
    with opened_store(data_dir) as store:
        rows = store.skipped()
    if as_json:
        print_json(
            [
                {
                    "source": r.source,
                    "position": r.position,
                    "stream": r.stream,
                    "type": r.type,
                    "reason": r.reason,
                    "detail": r.detail,
                    "skipped_at": r.skipped_at,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        console.print("no row was skipped")
        return
    table = Table("position", "source", "stream", "type", "reason", "detail", "skipped at")
    for r in rows:
        table.add_row(
            str(r.position),
            r.source,
            escape(repr(r.stream)),
            escape(r.type),
            r.reason,
            escape(r.detail[:120]),
            r.skipped_at,
        )
    console.print(table)
