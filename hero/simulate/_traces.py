"""A replica's cpu load at a moment, from its workload's trace and the run's random source."""

from __future__ import annotations

import math
import random
from datetime import datetime
from decimal import Decimal

from hero.simulate.scenario import Trace

__all__ = ["load_at"]

_PLACES = Decimal("0.001")


def _shape(trace: Trace, day: int, hour: int, weekday: int) -> float:
    base, amplitude = float(trace.base), float(trace.amplitude)
    daily = amplitude * math.cos(2 * math.pi * (hour - trace.peak_hour) / 24)
    if trace.kind == "flat":
        return base
    if trace.kind == "diurnal":
        return base + daily
    if trace.kind == "weekly":
        level = base + daily
        return level * float(trace.weekend_factor) if weekday >= 5 else level
    if trace.kind == "spike":
        start = trace.spike_day * 24 + trace.peak_hour
        now = day * 24 + hour
        return float(trace.spike_level) if start <= now < start + trace.spike_hours else base
    return base + float(trace.growth_per_day) * day  # growth


def load_at(trace: Trace, day: int, at: datetime, rng: random.Random) -> Decimal:
    """The load in [0, 1] at ``at`` (``day`` days into the run), with the trace's noise."""
    noise = float(trace.noise)
    value = _shape(trace, day, at.hour, at.weekday()) + rng.uniform(-noise, noise)
    return Decimal(repr(min(1.0, max(0.0, value)))).quantize(_PLACES)
