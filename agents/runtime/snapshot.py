"""An agent host's folded state as snapshot bytes, and back: the market model, the versions
applied per (topic, stream), and the brains of its shard.

The brains' own state is carried, not derived from the model: what a farmer, offtaker or
autoscaler keeps (the RFQs it has not answered, its open negotiations with the offers as made,
its backoff, the autoscaler's decision history) comes from the events routed to it, and much
of it (the offers' node certification and uptime, the RFQs' full terms) is nowhere in the model.
A snapshot is taken only where the host has folded the store in log order and decided nothing
yet (during and at the end of its catch-up): so the brains are exactly what a host that folded
the whole log holds there, and what they keep from deciding (commands in flight, questions
to a strategy, placement scores) is at its initial value and is not carried.

Each brain class's slots are declared here, as carried (with their type) or not carried; a
slot added to a brain fails ``tests/unit/test_host_snapshot.py`` until it is declared and
:data:`BRAINS_VERSION` bumped. The body is framed as the model's (:func:`hero.model.snapshot.frame`:
magic, version, digest), with :data:`HOST_SCHEMA_VERSION` standing for the model's format and
the brains' together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from agents.autoscaler import AutoscalerBrain
from agents.autoscaler import _Workload as AutoscaledWorkload
from agents.brain import Brain
from agents.farmer import FarmerBrain
from agents.offtaker import OfftakerBrain
from agents.offtaker import _Track as NegotiationTrack
from agents.runtime.routing import AppliedVersions
from hero.model import MarketState
from hero.model.codec import Codec, Shape, codec_for, describe
from hero.model.gcpause import collections_paused
from hero.model.snapshot import (
    MODEL_SCHEMA_VERSION,
    SnapshotUnreadable,
    frame,
    unframe,
)
from schemas import CounterOffered, OfferMade, RfqIssued, StrategyDecision

__all__ = [
    "BRAINS_FINGERPRINT",
    "BRAINS_VERSION",
    "CARRIED",
    "HOST_SCHEMA_VERSION",
    "NOT_CARRIED",
    "HostState",
    "brains_fingerprint",
    "decode_host",
    "encode_host",
]

#: The format of the brains' part (and of the applied versions'); bump it with
#: :data:`BRAINS_FINGERPRINT`. 2: the applied versions carry their floor.
BRAINS_VERSION = 2
#: A host snapshot's version: the model's format and the brains' together.
HOST_SCHEMA_VERSION = MODEL_SCHEMA_VERSION * 1000 + BRAINS_VERSION
BRAINS_FINGERPRINT = "a747ac2f3a9f9ecc722d6ed2fc6174452d83af7d9e54dae80027e63cb0f51c93"


class _TrackMarker:
    """The type of an offtaker's open negotiation (its records are the model's, by reference)."""


#: Per brain class: the slot its constructor takes, then the slots carried and their types.
CARRIED: dict[type[Brain], tuple[str, dict[str, Any]]] = {
    FarmerBrain: ("farm_id", {
        "_rfqs": dict[str, RfqIssued],
        "_counters": dict[str, CounterOffered],
        "_offers": dict[str, OfferMade],
        "_sweep_at": datetime | None,
    }),
    OfftakerBrain: ("offtaker_id", {
        "mandate_refused": str | None,
        "_issued": dict[str, int],
        "_tracks": dict[str, _TrackMarker],
        "_awaited": dict[str, str],
        "_targets": dict[str, tuple[datetime, int]],
        "_replaced": dict[str, str],
        "_backoff": dict[str, tuple[int, datetime]],
    }),
    AutoscalerBrain: ("offtaker_id", {
        "_workloads": dict[str, AutoscaledWorkload],
    }),
}  # fmt: skip

#: Per brain class: the slots not carried, each set by the constructor and changed only by
#: deciding (or naming the agent): at their initial value wherever a snapshot is taken.
NOT_CARRIED: dict[type[Brain], frozenset[str]] = {
    FarmerBrain: frozenset({"agent_id", "farm_id", "_deliberation", "_inflight"}),
    OfftakerBrain: frozenset(
        {
            "agent_id",
            "offtaker_id",
            "_deliberation",
            "_inflight",
            "_scores",
            "_naming",
            "_retry_at",
            "_redecide",
        }
    ),
    AutoscalerBrain: frozenset({"agent_id", "offtaker_id", "_deliberation"}),
}


@dataclass
class HostState:
    """What a host snapshot holds."""

    state: MarketState
    applied: AppliedVersions
    brains: dict[str, Brain]


def brains_fingerprint() -> str:
    lines: list[str] = []
    for kind, (made_by, slots) in CARRIED.items():
        lines.append(f"{kind.__qualname__}({made_by}; {sorted(NOT_CARRIED[kind])})")
        lines += [f"  {name}: {hint!r}" for name, hint in slots.items()]
        for hint in slots.values():
            lines += describe(hint)
    lines += describe(NegotiationTrack)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _track_codec(state: MarketState) -> Codec:
    rfq = codec_for(RfqIssued)
    offers = codec_for(dict[str, OfferMade])
    skipped = codec_for(set[str])
    notes = codec_for(dict[str, StrategyDecision])

    def encode(track: Any) -> list[Any]:
        return [rfq.encode(track.rfq), offers.encode(track.offers),
                skipped.encode(track.skipped), notes.encode(track.notes)]  # fmt: skip

    def decode(value: Any) -> NegotiationTrack:
        if type(value) is not list or len(value) != 4:
            raise Shape("expected an open negotiation's 4 parts")
        made = rfq.decode(value[0])
        nego = state.negotiations.get(made.negotiation_id)
        if nego is None:
            raise Shape(f"negotiation {made.negotiation_id!r} is not in the model")
        return NegotiationTrack(made, nego, state.offers, offers.decode(value[1]),
                                skipped.decode(value[2]), notes.decode(value[3]))  # fmt: skip

    return Codec(encode, decode)


def _slot_codecs(kind: type[Brain], state: MarketState) -> list[tuple[str, Codec]]:
    return [
        (name, _tracks_codec(state) if hint == dict[str, _TrackMarker] else codec_for(hint))
        for name, hint in CARRIED[kind][1].items()
    ]


def _tracks_codec(state: MarketState) -> Codec:
    track = _track_codec(state)

    def encode(value: Any) -> dict[str, Any]:
        return {k: track.encode(v) for k, v in value.items()}

    def decode(value: Any) -> dict[str, Any]:
        return {k: track.decode(v) for k, v in _object(value).items()}

    return Codec(encode, decode)


def _object(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise Shape(f"expected an object, got {type(value).__name__}")
    return value


_KINDS = {kind.__name__: kind for kind in CARRIED}


def _encode_brain(brain: Brain, state: MarketState) -> list[Any]:
    kind = type(brain)
    if kind not in CARRIED:
        raise TypeError(f"a host snapshot carries no {kind.__name__} (declare its slots)")
    made_by = CARRIED[kind][0]
    fields = {name: c.encode(getattr(brain, name)) for name, c in _slot_codecs(kind, state)}
    return [kind.__name__, getattr(brain, made_by), fields]


def _decode_brain(value: Any, state: MarketState) -> Brain:
    if type(value) is not list or len(value) != 3 or value[0] not in _KINDS:
        raise Shape("expected a brain: [kind, id, slots]")
    kind = _KINDS[value[0]]
    if type(value[1]) is not str:
        raise Shape("a brain's id must be text")
    maker: Callable[[str], Brain] = kind
    brain = maker(value[1])
    fields = _object(value[2])
    for name, codec in _slot_codecs(kind, state):
        if name not in fields:
            raise Shape(f"{kind.__name__} lacks {name}")
        setattr(brain, name, codec.decode(fields[name]))
    return brain


def encode_host(host: HostState) -> bytes:
    with collections_paused():
        tree = {
            "model": codec_for(MarketState).encode(host.state),
            "applied": [[t, stream, version] for (t, stream), version in host.applied.items()],
            "applied_floor": host.applied.floor,
            "brains": [_encode_brain(brain, host.state) for brain in host.brains.values()],
        }
        payload = orjson.dumps(tree)
    return frame(payload, HOST_SCHEMA_VERSION)


def decode_host(body: bytes) -> HostState:
    """The host's state in ``body``; :class:`SnapshotUnreadable` saying why if unreadable."""
    payload = unframe(body, HOST_SCHEMA_VERSION)
    try:
        with collections_paused():
            tree = _object(orjson.loads(payload))
            state = codec_for(MarketState).decode(tree["model"])
            floor = tree["applied_floor"]
            if type(floor) is not int or floor < 0:
                raise Shape("the applied versions' floor must be a position (int >= 0)")
            applied = AppliedVersions.restored([_applied(row) for row in tree["applied"]], floor)
            brains = [_decode_brain(value, state) for value in tree["brains"]]
    except (Shape, orjson.JSONDecodeError, ValueError, TypeError, KeyError, ArithmeticError) as e:
        raise SnapshotUnreadable(f"the host's state does not decode: {e}") from e
    return HostState(state, applied, {brain.agent_id: brain for brain in brains})


def _applied(row: Any) -> tuple[tuple[str, str], int]:
    if type(row) is not list or len(row) != 3 or type(row[2]) is not int:
        raise Shape("expected [topic, stream, version]")
    topic, stream, version = row
    if type(topic) is not str or type(stream) is not str:
        raise Shape("a topic and a stream are text")
    return (topic, stream), version
