"""The pure core: decision rules, pricing and scoring over the schemas. No I/O here.

The pure core, just above ``schemas``.
See docs/architecture.md for the layers and the flow of one command.
"""

from hero.domain.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
