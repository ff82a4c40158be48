"""Who made the negotiation moves, folded from the decisions the move events carry
(``StrategyDecision``): moves by strategy and outcome, why the rules took over, what the
guardrails did, and the model's usage (tokens, latency) -- counts only, no ids."""

from __future__ import annotations

import json
from collections import Counter as Tally
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hero.gateway._prometheus import Counter, Metric

__all__ = ["DECISION_EVENTS", "StrategySnapshot", "StrategyTally", "strategy_metrics"]

#: The events that may carry a decision (``decision``) or decisions (``decisions``).
DECISION_EVENTS = frozenset(
    {
        "OfferMade",
        "OfferDeclined",
        "CounterOffered",
        "CounterAccepted",
        "CounterRejected",
        "OfferAccepted",
        "NegotiationAwarded",
        "NegotiationFailed",
        "NegotiationExpired",
    }
)

_FALLBACKS = (  # (prefix of StrategyDecision.fallback, label)
    ("timeout", "timeout"),
    ("no answer by", "timeout"),
    ("model error", "model_error"),
    ("advisor error", "model_error"),
    ("invalid answer", "invalid_answer"),
    ("the model's move was refused", "guardrails"),
    ("call budget", "call_budget"),
    ("no model configured", "no_model"),
)


def _fallback_kind(reason: str) -> str:
    for prefix, kind in _FALLBACKS:
        if reason.startswith(prefix):
            return kind
    return "other"


@dataclass(frozen=True)
class StrategySnapshot:
    moves: dict[tuple[str, str], int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    guardrails: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: int = 0
    calls: int = 0


class StrategyTally:
    """Not thread-safe on its own: :class:`~hero.gateway.metrics.LogTally` holds its lock."""

    def __init__(self) -> None:
        self._moves: Tally[tuple[str, str]] = Tally()
        self._fallbacks: Tally[str] = Tally()
        self._guardrails: Tally[tuple[str, str]] = Tally()
        self._tokens_in = self._tokens_out = self._latency_ms = self._calls = 0

    def apply(self, envelope_json: str) -> None:
        if '"strategy"' not in envelope_json:
            return  # most moves are the rules' and carry no decision: skip the parse
        payload = json.loads(envelope_json).get("payload", {})
        notes = [payload.get("decision"), *(payload.get("decisions") or [])]
        for note in notes:
            if isinstance(note, dict):
                self._note(note)

    def _note(self, note: dict[str, Any]) -> None:
        hits = note.get("guardrails") or []
        fallback = note.get("fallback")
        if fallback:
            outcome = "fallback"
            self._fallbacks[_fallback_kind(str(fallback))] += 1
        else:
            clamped = any(h.get("outcome") == "clamped" for h in hits)
            outcome = "clamped" if clamped else "as_proposed"
        self._moves[(str(note.get("strategy")), outcome)] += 1
        for hit in hits:
            self._guardrails[(str(hit.get("rule")), str(hit.get("outcome")))] += 1
        tokens_in, tokens_out = int(note.get("tokens_in", 0)), int(note.get("tokens_out", 0))
        latency = int(note.get("latency_ms", 0))
        self._tokens_in += tokens_in
        self._tokens_out += tokens_out
        self._latency_ms += latency
        self._calls += bool(tokens_in or tokens_out or latency)

    def snapshot(self) -> StrategySnapshot:
        return StrategySnapshot(
            moves=dict(self._moves),
            fallbacks=dict(self._fallbacks),
            guardrails=dict(self._guardrails),
            tokens_in=self._tokens_in,
            tokens_out=self._tokens_out,
            latency_ms=self._latency_ms,
            calls=self._calls,
        )


def _labelled(name: str, help: str, labels: tuple[str, ...], counts: Mapping[Any, int]) -> Counter:
    counter = Counter(name, help, labels)
    for key, count in sorted(counts.items()):
        values = key if isinstance(key, tuple) else (key,)
        counter.set_total(count, **dict(zip(labels, values, strict=True)))
    return counter


def strategy_metrics(snapshot: StrategySnapshot) -> list[Metric]:
    moves = _labelled(
        "hero_strategy_moves_total",
        "Negotiation moves recorded with a strategy decision, by the strategy whose move was "
        "taken (llm, rule) and outcome (as_proposed, clamped, fallback).",
        ("strategy", "outcome"),
        snapshot.moves,
    )
    fallbacks = _labelled(
        "hero_strategy_fallbacks_total",
        "Moves the rules made although a model was asked, by reason.",
        ("reason",),
        snapshot.fallbacks,
    )
    guardrails = _labelled(
        "hero_strategy_guardrails_total",
        "Guardrail hits on model moves, by rule (floor, ceiling, budget, capacity, policy, "
        "term, protocol) and outcome (clamped, refused).",
        ("rule", "outcome"),
        snapshot.guardrails,
    )
    tokens = _labelled(
        "hero_llm_tokens_total",
        "Model tokens recorded on decisions.",
        ("direction",),
        {"in": snapshot.tokens_in, "out": snapshot.tokens_out},
    )
    calls = Counter("hero_llm_calls_recorded_total", "Model calls recorded on decisions.")
    calls.set_total(snapshot.calls)
    latency = Counter(
        "hero_llm_latency_seconds_total",
        "Model call latency recorded on decisions, summed (divide by the calls for the mean).",
    )
    latency.set_total(snapshot.latency_ms / 1000)
    return [moves, fallbacks, guardrails, tokens, calls, latency]
