"""``hero demo``: the command only; the demo itself is the package :mod:`hero.demo`."""

from __future__ import annotations

from typing import Annotated

import typer

from hero.cli.common import DataDir
from hero.demo.run import run_demo

__all__ = ["demo"]


def demo(
    keep: Annotated[bool, typer.Option(help="leave the stack running afterwards")] = False,
    in_process: Annotated[
        bool,
        typer.Option(help="no stack: run the agents in this process, over the event store"),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="seconds to wait for the negotiations to settle, the scale-up, the migration",
        ),
    ] = 30.0,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Start the stack, let the agents negotiate a small fleet's capacity on Ray, show the
    contracts and the declines; spike an autoscaled workload's cpu (it scales out across both
    grids), fail one of its nodes (its replica moves, the SLA outcome is recorded); top up the
    offtakers through the payment webhook, bill a few hours (on a fast-forwarded clock), show
    who was paid and the SLA refund; stop what it started."""
    run_demo(data_dir, keep=keep, in_process=in_process, timeout=timeout, as_json=as_json)
