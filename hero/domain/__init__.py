"""The pure core: decision rules, pricing and scoring over the schemas. No I/O here."""

from hero.domain.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
