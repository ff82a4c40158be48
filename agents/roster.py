"""The roster: which agents an event brings into being (a farmer per farm, an offtaker per
mandate, an autoscaler when a mandate scales). Apart from the market view, so the view knows
no brain; the agent set and the host are given a roster (tests may give their own)."""

from __future__ import annotations

from collections.abc import Callable

from agents.autoscaler import AutoscalerBrain
from agents.brain import Brain
from agents.farmer import FarmerBrain
from agents.offtaker import OfftakerBrain
from schemas import Envelope, Event, FarmRegistered, OfftakerMandateSet

__all__ = ["Roster", "market_roster"]

Roster = Callable[[Envelope, Event], list[Brain]]
"""The agents an event brings into being; the caller adopts those its shard owns."""


def market_roster(envelope: Envelope, event: Event) -> list[Brain]:
    if isinstance(event, FarmRegistered):
        return [FarmerBrain(event.farm_id)]
    if isinstance(event, OfftakerMandateSet):
        brains: list[Brain] = [OfftakerBrain(event.offtaker_id)]
        if any(w.autoscale is not None for w in event.mandate.workloads):
            brains.append(AutoscalerBrain(event.offtaker_id))
        return brains
    return []
