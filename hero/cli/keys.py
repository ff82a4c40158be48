"""``hero keys create|list|revoke``: the gateway's API keys, in the running stack's Valkey.

A key is printed once, when it is made; Valkey keeps only a SHA-256 of its secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from hero.access import Role
from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for
from hero.readmodels.keys import ApiKeys

__all__ = ["app"]

app = typer.Typer(help="API keys of the gateway.", no_args_is_help=True)

T = TypeVar("T")


def _with_keys(data_dir: Path | None, action: Callable[[ApiKeys], Awaitable[T]]) -> T:
    """Run ``action`` on the keys in the stack's Valkey; exit 1 when there is no stack."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from infra import LocalStack, StackError

    try:
        redis_url = LocalStack(settings_for(data_dir)).endpoints().redis_url
    except StackError as error:
        fail(str(error), code=1)

    async def run() -> T:
        redis = Redis.from_url(redis_url)
        try:
            return await action(ApiKeys(redis))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except RedisError as error:
        fail(f"cannot reach Valkey at the stack's address: {error}", code=1)


@app.command("create")
def create(
    role: Annotated[Role, typer.Option(help="farmer, offtaker, developer or admin")],
    tenant: Annotated[
        list[str] | None,
        typer.Option(help="a farm id (farmer, repeatable) or the offtaker id (offtaker)"),
    ] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Make a key; it is printed once and cannot be shown again."""

    async def action(keys: ApiKeys) -> tuple[str, dict[str, object]]:
        key, record = await keys.create(role, tenant or [])
        return key, record.as_json()

    from hero.readmodels.keys import check_tenants

    try:
        check_tenants(role, tenant or [])
    except ValueError as error:
        fail(str(error))
    key, record = _with_keys(data_dir, action)
    if as_json:
        print_json({**record, "key": key})
        return
    tenants = ", ".join(str(t) for t in record["tenants"]) or "-"  # type: ignore[attr-defined]
    console.print(f"created {role.value} key {record['key_id']} (tenants: {tenants})")
    console.print("the key (shown once, store it now):")
    typer.echo(key)


@app.command("list")
def list_keys(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Every key: id, role, tenants, when made, when revoked (never the secret)."""
    records = _with_keys(data_dir, lambda keys: keys.list())
    if as_json:
        print_json([record.as_json() for record in records])
        return
    if not records:
        console.print("no API keys")
        return
    table = Table("key id", "role", "tenants", "created", "revoked")
    for record in records:
        table.add_row(
            record.key_id,
            record.role.value,
            ", ".join(record.tenants) or "-",
            record.created_at,
            record.revoked_at or "",
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="the key's id (hero keys list)")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a key: it is refused (401) from now on, and its open streams end at their next
    heartbeat."""
    record = _with_keys(data_dir, lambda keys: keys.revoke(key_id))
    if record is None:
        fail(f"no API key {key_id}")
    if as_json:
        print_json(record.as_json())
        return
    console.print(f"revoked key {record.key_id} ({record.role.value}) at {record.revoked_at}")
