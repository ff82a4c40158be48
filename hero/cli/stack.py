"""``hero up``, ``hero down``, ``hero status``, ``hero config``: the embedded stack by hand."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for
from infra import ComponentStatus, LocalStack, StackError


def _table(components: list[ComponentStatus]) -> Table:
    supervised = any(c.restarts is not None for c in components)
    columns = ["component", "state", "address", "pid"]
    table = Table(*columns, *(["restarts", "last exit"] if supervised else []), "detail")
    colours = {"up": "green", "degraded": "yellow", "external": "cyan", "down": "red"}
    for c in components:
        colour = colours.get(c.state, "white")
        state = f"[{colour}]{c.state}[/]"
        if c.supervision not in (None, "running"):  # restarting in 2.0 s, crash-looping, ...
            state += f" ({c.supervision})"
        row = [c.name, state, c.address or "-", str(c.pid or "-")]
        if supervised:
            row += [_count(c.restarts), _last_exit(c)]
        table.add_row(*row, c.detail or "")
    return table


def _count(restarts: int | None) -> str:
    return "-" if restarts is None else str(restarts)


def _last_exit(c: ComponentStatus) -> str:
    if c.last_exit is None:
        return "-"
    when = f" at {c.last_exit_at:%H:%M:%S}" if c.last_exit_at is not None else ""
    return c.last_exit + when


class Broker(StrEnum):
    tansu = "tansu"
    kafka = "kafka"


StoreChoice = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HERO_STORE",
        help="the embedded event store: sqlite (events.db) or postgres (PostgreSQL under the"
        " data dir) [default: postgres if this data dir has one, else sqlite]",
        show_default=False,
    ),
]
_STORES = ("sqlite", "postgres")


def up(
    data_dir: DataDir = None,
    store: StoreChoice = None,
    as_json: AsJson = False,
    broker: Annotated[
        Broker | None,
        typer.Option(
            "--broker",
            help="tansu (embedded, memory only) or kafka (Apache Kafka, its log kept in the "
            "data dir) [default: HERO_BROKER, else tansu]",
            show_default=False,
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            min=1,
            max=8,
            help="copies of the scalable processes: N relays (one publishes, the others stand"
            " by on the store's lease), N gateways (each on its own port) and N usage workers"
            " (one consumer group) [default: HERO_REPLICAS, else 1]",
            show_default=False,
        ),
    ] = None,
    ray_nodes: Annotated[
        int | None,
        typer.Option(
            "--ray-nodes",
            min=1,
            max=8,
            help="Ray nodes on this machine: the head and N-1 worker nodes; the agent hosts"
            " are spread over them [default: HERO_RAY_NODES, else 1]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the stack (broker, Valkey, Ray, relay, treasury, usage, agents, and PostgreSQL with
    --store postgres); wait for health."""
    if store is not None and store not in _STORES:
        fail(f"--store must be one of {', '.join(_STORES)}, got {store!r}")
    settings = settings_for(data_dir)
    if store is not None:
        settings = settings.model_copy(update={"store": store})
    if broker is not None:
        settings = settings.model_copy(update={"broker": broker.value})
    if replicas is not None:
        settings = settings.model_copy(update={"replicas": replicas})
    if ray_nodes is not None:
        settings = settings.model_copy(update={"ray_nodes": ray_nodes})
    try:
        report = LocalStack(settings).up()
    except StackError as error:
        fail(str(error), code=1)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    console.print(_table(report.components))
    if report.already_running:
        console.print(f"a stack is already running under {settings.data_dir}; nothing started")
    else:
        console.print(
            f"[bold green]healthy in {report.seconds:.1f} s[/] (data under {settings.data_dir})"
        )


def down(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Stop every process `hero up` started for this data dir, and nothing else."""
    settings = settings_for(data_dir)
    try:
        stopped = LocalStack(settings).down()
    except StackError as error:
        fail(str(error), code=1)
    if as_json:
        print_json([c.model_dump(mode="json") for c in stopped])
        return
    console.print(_table(stopped))


def status(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Report each component: up/down/external/degraded, address, pid, and under the
    supervisor its restarts, last exit (code or signal, and when) and state (restarting in
    N s, crash-looping); the supervisor's own row says whether it runs."""
    components = LocalStack(settings_for(data_dir)).status()
    if as_json:
        print_json([c.model_dump(mode="json") for c in components])
        return
    console.print(_table(components))


def config(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Print the effective configuration, secrets masked."""
    data: dict[str, Any] = settings_for(data_dir).masked()
    if as_json:
        print_json(data)
        return
    table = Table("setting", "value")
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)
