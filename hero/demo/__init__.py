"""``hero demo``: the whole market in one run, on the embedded stack or in this process.

:mod:`hero.demo.run` tells the story (fleet, policies, mandates, negotiation, money);
:mod:`hero.demo.scaling` its scaling act (a spike, a failed node, the SLA outcome). The CLI
keeps only the typer command that calls it. A process: the outermost layer.

See docs/architecture.md for the layers and the flow of one command.
"""
