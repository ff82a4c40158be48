"""An :class:`~agents.strategies.moves.Advisor` that asks a LangChain chat model for the move.

The model answers through structured output (a ``Move`` tool call). Whatever goes wrong — the
provider fails or times out, the answer holds no move, the move does not validate — the
advisor does not raise: it answers with an :class:`Advice` carrying the error (and the
unusable answer in ``raw``), and the rules decide.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from agents.strategies.chat import chat_model
from agents.strategies.moves import Advice, Advisor, Move, NoAdvisor, Question

if TYPE_CHECKING:
    from hero.config import HeroSettings

__all__ = ["LlmAdvisor", "advisor_from_settings", "situation_json", "system_prompt"]

#: The longest error or raw answer an Advice keeps.
_LIMIT: Final = 500

Role = Literal["offtaker", "farmer"]
Stage = Literal["offer", "rfq", "counter"]

_GRID: Final = (
    "the ThreeFold Grid, a decentralised cloud whose compute capacity is sold by independent "
    "farmers who run the nodes and rented by offtakers, billed per hour"
)

_ROLES: Final[dict[str, str]] = {
    "offtaker": (
        f"You are the buying agent of an offtaker on {_GRID}. You negotiate with farmers' "
        "selling agents to get the capacity your principal needs at a good price: as cheap "
        "as you can, without losing capacity it needs."
    ),
    "farmer": (
        f"You are the selling agent of a farmer on {_GRID}. You negotiate with offtakers' "
        "buying agents to rent out your principal's nodes at a good price: as well paid as "
        "you can, without losing deals worth having."
    ),
}

_STAGES: Final[dict[tuple[str, str], str]] = {
    ("offtaker", "offer"): (
        "A farmer has made an offer for the capacity you asked for. Choose one action: "
        "`accept` takes the offer at its price; `counter` proposes `price_hour` instead; "
        "`decline` turns the offer down (say why in `reason`)."
    ),
    ("farmer", "rfq"): (
        "An offtaker has asked for quotes (an RFQ). Choose one action: `accept` offers at "
        "our asking price; `counter` offers at `price_hour` instead; `decline` makes no offer "
        "(say why in `reason`). When offering, `node_ids` may name the nodes to offer; leave "
        "it empty to let the rules choose."
    ),
    ("farmer", "counter"): (
        "The offtaker has answered our offer with a counter price. Choose one action: "
        "`accept` takes their price; `decline` rejects it (say why in `reason`). You cannot "
        "counter a counter."
    ),
}

_OFFTAKER_ANY: Final = (
    "You are deciding on a farmer's offer. Choose one action: `accept` takes the offer at its "
    "price; `counter` proposes `price_hour` instead; `decline` turns it down (say why in "
    "`reason`)."
)

_RULES: Final = (
    "The user message holds the situation as JSON: the negotiation so far and the limits you "
    "move within. `price_hour` is USD per hour for one replica, a decimal number. The hard "
    "limits (price bounds, budget, capacity) are enforced after you answer: a move outside "
    "them is rejected and wasted, and the rules decide instead, so stay within them. Give a "
    "short rationale (one or two sentences) for your move; it is recorded. Answer only "
    "through the structured output (the Move tool), never in plain text."
)


def system_prompt(role: Role, stage: Stage) -> str:
    """What the model is told about itself and the move to make for ``role`` at ``stage``."""
    stage_text = _STAGES.get((role, stage))
    if stage_text is None:
        action = Move.model_fields["action"].description or ""
        stage_text = (
            _OFFTAKER_ANY
            if role == "offtaker"
            else f"Choose one action; what each means: {action}."
        )
    return "\n\n".join((_ROLES[role], stage_text, _RULES))


class _SituationEncoder(json.JSONEncoder):
    """JSON for situations: decimals as exact strings, times as ISO 8601."""

    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return str(o)
        if isinstance(o, datetime | date | clock_time):
            return o.isoformat()
        if isinstance(o, timedelta):
            return o.total_seconds()
        if isinstance(o, BaseModel):
            return o.model_dump(mode="json")
        if isinstance(o, set | frozenset):
            return sorted(o, key=str)
        return to_jsonable_python(o, fallback=str)


def situation_json(situation: dict[str, Any]) -> str:
    """``situation`` as indented JSON, as the model reads it."""
    return json.dumps(situation, cls=_SituationEncoder, indent=2, ensure_ascii=False)


def _clip(text: str) -> str:
    return text[:_LIMIT]


def _summary(error: BaseException) -> str:
    """The first problem of a parsing error, on one line."""
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False)
        if problems:
            first = problems[0]
            where = ".".join(str(part) for part in first["loc"]) or "move"
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return f"{where}: {first['msg']}{more}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _tool_args(raw: AIMessage) -> str:
    """The arguments of the answer's first tool call, as JSON (or as sent when not JSON)."""
    if raw.tool_calls:
        return json.dumps(raw.tool_calls[0]["args"], cls=_SituationEncoder, ensure_ascii=False)
    if raw.invalid_tool_calls:
        return str(raw.invalid_tool_calls[0].get("args") or "")
    return raw.text


class LlmAdvisor(Advisor):
    """Asks ``model`` for each move; ``name`` (the ``HERO_LLM`` spec) is recorded on advice."""

    def __init__(self, model: BaseChatModel, name: str) -> None:
        self.model = model
        self.name = name
        self._structured: Runnable[list[BaseMessage], Any] = model.with_structured_output(
            Move, include_raw=True
        )

    def messages(self, question: Question) -> list[BaseMessage]:
        """What the model is sent for ``question``."""
        return [
            SystemMessage(content=system_prompt(question.role, question.stage)),
            HumanMessage(content=situation_json(question.situation)),
        ]

    def advise(self, question: Question) -> Advice:
        started = time.monotonic()
        try:
            result = self._structured.invoke(self.messages(question))
        except Exception as exc:
            return Advice(
                question_id=question.question_id,
                error=_clip(f"model error: {type(exc).__name__}: {exc}"),
                model=self.name,
                latency_ms=self._since(started),
            )
        latency_ms = self._since(started)

        raw = result.get("raw") if isinstance(result, dict) else None
        parsed = result.get("parsed") if isinstance(result, dict) else None
        parsing_error = result.get("parsing_error") if isinstance(result, dict) else None
        tokens_in, tokens_out = self._tokens(raw)
        common: dict[str, Any] = {
            "question_id": question.question_id,
            "model": self.name,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "latency_ms": latency_ms,
        }

        if isinstance(parsed, Move):
            return Advice(move=parsed, **common)
        if not isinstance(raw, AIMessage):
            return Advice(
                error=_clip(f"invalid answer: not a chat message ({type(raw).__name__})"),
                raw=_clip(repr(raw)),
                **common,
            )
        if parsing_error is not None:
            return Advice(
                error=_clip(f"invalid answer: {_summary(parsing_error)}"),
                raw=_clip(_tool_args(raw)),
                **common,
            )
        if raw.invalid_tool_calls:
            return Advice(
                error="invalid answer: the move's arguments are not valid JSON",
                raw=_clip(_tool_args(raw)),
                **common,
            )
        return Advice(
            error="invalid answer: no move in the model's answer",
            raw=_clip(raw.text),
            **common,
        )

    @staticmethod
    def _since(started: float) -> int:
        return max(0, round((time.monotonic() - started) * 1000))

    @staticmethod
    def _tokens(raw: object) -> tuple[int, int]:
        usage = raw.usage_metadata if isinstance(raw, AIMessage) else None
        if not usage:
            return 0, 0
        return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def advisor_from_settings(settings: HeroSettings) -> Advisor:
    """The advisor ``HERO_LLM`` configures: none (the rules decide) or a model.

    Raises :class:`~agents.strategies.chat.LlmConfigError` when the spec names no model this
    installation can build.
    """
    if settings.llm is None:
        return NoAdvisor()
    return LlmAdvisor(chat_model(settings.llm, timeout_s=settings.llm_timeout_s), settings.llm)
