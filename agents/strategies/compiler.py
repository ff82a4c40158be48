"""Plain language to a farmer's auto-accept policy or an offtaker's mandate, through a chat
model's tool calls.

The model is bound with two tools: a proposal (``propose_policy`` / ``propose_mandate``: the
whole policy or mandate, plus the assumptions it made) and ``ask_questions``. Its answer is
read from the raw ``AIMessage.tool_calls`` and never trusted: a proposal goes through
``FarmerPolicy.model_validate`` / ``Mandate.model_validate``, the very checks a hand-written
policy passes, then through checks against the market (regions and grids it knows). So the
outcome is one of

* :class:`Compiled` -- a valid policy or mandate, with the model's assumptions;
* :class:`Clarify` -- questions for the person (the model's, or ours for a request the market
  cannot serve);
* :class:`Refused` -- no usable answer: field errors, no tool call, an unknown tool, args
  that cannot be read. Never a guess.

A model that fails (a provider error, a timeout) raises :class:`CompileError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.tool import ToolCall
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hero.domain.pricing import GENESIS_CU_HOUR, GENESIS_SU_HOUR, HOURS_PER_MONTH
from schemas import FarmerPolicy, Grid, Mandate, Money
from schemas.resources import GIB

__all__ = [
    "ASK_QUESTIONS",
    "PROPOSE_MANDATE",
    "PROPOSE_POLICY",
    "AskQuestions",
    "Clarify",
    "CompileError",
    "Compiled",
    "MarketFacts",
    "ProposeMandate",
    "ProposePolicy",
    "Refused",
    "compile_mandate",
    "compile_policy",
]

#: The tools' names, as the model calls them.
PROPOSE_POLICY = "propose_policy"
PROPOSE_MANDATE = "propose_mandate"
ASK_QUESTIONS = "ask_questions"

_Target = TypeVar("_Target", FarmerPolicy, Mandate)

_ASSUMPTIONS_HELP = "every choice made that the text does not state, one short sentence each"


# -- what the model is told, and the tools it may call ----------------------------------------


class MarketFacts(BaseModel):
    """What the model needs to know about the market to read a request: the regions and grids
    it may name, the reference prices a markup multiplies, and how long a month is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    regions: list[str] = Field(description="the market's region names, to use verbatim")
    grids: list[Grid] = Field(default_factory=lambda: list(Grid))
    reference_cu_hour: Money = Field(
        default=GENESIS_CU_HOUR, description="USD per CU-hour that a markup of 1 asks"
    )
    reference_su_hour: Money = Field(
        default=GENESIS_SU_HOUR, description="USD per SU-hour that a markup of 1 asks"
    )
    hours_per_month: int = Field(default=HOURS_PER_MONTH, gt=0)
    bytes_per_gb: int = Field(default=GIB, description="TFChain counts a GB as 1024^3 bytes")


class ProposePolicy(FarmerPolicy):
    """Propose the farm's complete auto-accept policy that the text asks for."""

    model_config = ConfigDict(title=PROPOSE_POLICY)

    assumptions: list[str] = Field(default_factory=list, description=_ASSUMPTIONS_HELP)


class ProposeMandate(Mandate):
    """Propose the offtaker's complete mandate that the text asks for."""

    model_config = ConfigDict(title=PROPOSE_MANDATE)

    assumptions: list[str] = Field(default_factory=list, description=_ASSUMPTIONS_HELP)


class AskQuestions(BaseModel):
    """Ask the person what the text leaves open, or how to change a request the market
    cannot serve, instead of guessing."""

    model_config = ConfigDict(title=ASK_QUESTIONS, extra="forbid")

    questions: list[str] = Field(
        min_length=1, description="short questions, each answerable on its own"
    )


_COMMON_RULES = """\
Call exactly one tool: {propose} when the text is clear, or ask_questions when it is \
ambiguous, contradicts itself, or asks for something the market cannot do (a region or grid \
not in the market facts, say). Never guess what the text leaves open when it matters: ask.

- Start from the current {noun} when there is one and change only what the text asks for; \
always give the complete {noun}, every field.
- Write every decimal number as a JSON string ("0.9", "0.2"), never as a float. Money is \
{{"amount": "<decimal string>", "currency": "USD"}}; every price is in USD.
- Shares are fractions from 0 to 1: "20%" is "0.2".
- Terms are in hours; a month is {hours_per_month} hours ("12 months" is \
{twelve_months} hours).
- Regions and grids: only the names in the market facts, spelled exactly as there. \
"Grid 3" is grid3, "Grid 4" is grid4.
- negotiator is "llm" only when the text asks a language model to negotiate; else "rule".
- Put in assumptions every choice you made that the text does not state.

Market facts: {facts}
"""

_POLICY_PROMPT = """\
You turn a farmer's plain-language instructions into the auto-accept policy of a farm on \
the ThreeFold Grid marketplace (HERO). The policy decides how the farm's agent answers \
requests for quotes: mode auto (offer by itself), approve (ask the farmer first) or off.

- A price relative to the market ("0.9x market price", "10% above reference") is a markup: \
the factor on the reference prices (0.9, 1.1). Give either a markup or fixed prices \
(price_cu_hour, price_su_hour), never both.
- "Keep 20% free" is reserve_share "0.2". "Never more than N months" is max_term_hours.
- An empty regions list serves every region.
"""

_MANDATE_PROMPT = """\
You turn an offtaker's plain-language instructions into its mandate on the ThreeFold Grid \
marketplace (HERO): the workloads its agent buys capacity for, and its limits.

- resources are per replica: cru in virtual cores; mru (memory), sru (SSD) and hru (HDD) in \
bytes, where 1 GB is {bytes_per_gb} bytes; ipv4 a count of public addresses.
- budget_month is USD per month for the whole mandate; max_price_cu_hour is the most it pays \
in USD per CU-hour (the reference price is {reference_cu_hour}).
- term_hours is the contract term. An empty regions list takes every region.
"""


def _system_prompt(kind: _Kind[Any], market: MarketFacts, current: BaseModel | None) -> str:
    """The task, the rules, the market facts and the current one, for the system message."""
    task = kind.prompt.format(
        bytes_per_gb=market.bytes_per_gb, reference_cu_hour=str(market.reference_cu_hour)
    )
    rules = _COMMON_RULES.format(
        propose=kind.tool_name,
        noun=kind.noun,
        hours_per_month=market.hours_per_month,
        twelve_months=12 * market.hours_per_month,
        facts=market.model_dump_json(),
    )
    if current is None:
        now = f"There is no current {kind.noun}: build one; unmentioned fields keep defaults."
    else:
        now = f"The current {kind.noun}: {current.model_dump_json()}"
    return f"{task}\n{rules}\n{now}\n"


# -- outcomes ---------------------------------------------------------------------------------


class Compiled(BaseModel, Generic[_Target]):
    """A validated policy or mandate, the assumptions the model made, and the text."""

    model_config = ConfigDict(frozen=True)

    value: _Target
    assumptions: list[str] = Field(default_factory=list)
    source_text: str


class Clarify(BaseModel):
    """Questions for the person; nothing is proposed until they are answered."""

    model_config = ConfigDict(frozen=True)

    questions: list[str] = Field(min_length=1)


class Refused(BaseModel):
    """No usable answer: why, and for a proposal that fails validation, each field at fault
    as ``(dotted.path, message)``."""

    model_config = ConfigDict(frozen=True)

    reason: str
    field_errors: list[tuple[str, str]] = Field(default_factory=list)


class CompileError(RuntimeError):
    """The model could not be asked: a provider error, a timeout, no tool support."""


# -- compiling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind(Generic[_Target]):
    """What differs between compiling a policy and a mandate."""

    noun: str
    target: type[_Target]
    tool: type[BaseModel]
    tool_name: str
    prompt: str
    questions: Callable[[_Target, MarketFacts], list[str]]


def compile_policy(
    model: BaseChatModel, text: str, *, current: FarmerPolicy | None, market: MarketFacts
) -> Compiled[FarmerPolicy] | Clarify | Refused:
    """The farmer policy ``text`` asks for, starting from ``current``.

    Raises :class:`CompileError` when the model fails."""
    return _compile(model, text, _POLICY, current, market)


def compile_mandate(
    model: BaseChatModel, text: str, *, current: Mandate | None, market: MarketFacts
) -> Compiled[Mandate] | Clarify | Refused:
    """The offtaker mandate ``text`` asks for, starting from ``current``.

    Raises :class:`CompileError` when the model fails."""
    return _compile(model, text, _MANDATE, current, market)


def _compile(
    model: BaseChatModel,
    text: str,
    kind: _Kind[_Target],
    current: _Target | None,
    market: MarketFacts,
) -> Compiled[_Target] | Clarify | Refused:
    if not text.strip():
        return Refused(reason=f"no text to compile into a {kind.noun}")
    messages: list[BaseMessage] = [
        SystemMessage(_system_prompt(kind, market, current)),
        HumanMessage(text),
    ]
    answer = _ask(model, [kind.tool, AskQuestions], messages)
    if not isinstance(answer, AIMessage):
        return Refused(reason=f"the model answered with a {type(answer).__name__}, not a message")
    outcome = _read_calls(answer, kind)
    if not isinstance(outcome, tuple):
        return outcome
    args, assumptions = outcome
    return _validated(kind, args, assumptions, text, market)


def _ask(model: BaseChatModel, tools: list[type[BaseModel]], messages: list[BaseMessage]) -> Any:
    """The model's answer with the tools bound; a tool call is required where the provider
    supports forcing one (``any``), and its absence is caught when reading the answer."""
    try:
        bound = model.bind_tools(tools, tool_choice="any")
    except NotImplementedError:
        raise CompileError(
            f"the model {type(model).__name__} does not support tool calls"
        ) from None
    except Exception as error:  # a provider refusing the tools' schemas, say
        raise CompileError(
            f"the model {type(model).__name__} did not take the tools: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        return bound.invoke(messages)
    except Exception as error:  # any provider failure: the caller reports it, no traceback
        detail = str(error) or type(error).__name__
        raise CompileError(f"the model failed: {type(error).__name__}: {detail}") from error


def _read_calls(
    answer: AIMessage, kind: _Kind[_Target]
) -> tuple[dict[str, Any], list[str]] | Clarify | Refused:
    """The proposal's args and assumptions, or the model's questions, or why neither."""
    if answer.invalid_tool_calls:
        # Even beside a readable call: what the unreadable one said (questions?) is unknown.
        return _unreadable(answer)
    calls = answer.tool_calls
    if not calls:
        return _no_call(answer)
    names = [call["name"] for call in calls]
    unknown = sorted({n for n in names if n not in (kind.tool_name, ASK_QUESTIONS)})
    if unknown:
        return Refused(reason=f"the model called an unknown tool: {', '.join(unknown)}")
    asked = [call for call in calls if call["name"] == ASK_QUESTIONS]
    if asked:
        # Questions win over a proposal made alongside them: the model itself is unsure.
        return _questions(asked)
    if len(calls) > 1:
        return Refused(reason=f"the model made {len(calls)} proposals at once; expected one")
    return _proposal(calls[0])


def _unreadable(answer: AIMessage) -> Refused:
    bad = answer.invalid_tool_calls[0]
    return Refused(
        reason=f"the model's {bad.get('name') or 'tool'} call could not be read: "
        f"{bad.get('error') or 'its arguments are not valid JSON'}"
    )


def _no_call(answer: AIMessage) -> Refused:
    said = " ".join(answer.text.split())
    if not said:
        return Refused(reason="the model answered nothing (no tool call, no text)")
    shown = said if len(said) <= 300 else said[:297] + "..."
    return Refused(reason=f"the model answered in text instead of calling a tool: {shown}")


def _questions(calls: list[ToolCall]) -> Clarify | Refused:
    questions: list[str] = []
    for call in calls:
        try:
            asked = AskQuestions.model_validate(call["args"])
        except ValidationError as error:
            return Refused(
                reason=f"the model's {ASK_QUESTIONS} call could not be read",
                field_errors=_field_errors(error),
            )
        questions.extend(q.strip() for q in asked.questions if q.strip())
    if not questions:
        return Refused(reason="the model asked only empty questions")
    return Clarify(questions=questions)


def _proposal(call: ToolCall) -> tuple[dict[str, Any], list[str]] | Refused:
    args = dict(call["args"])
    raw = args.pop("assumptions", None)
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        return Refused(
            reason="the proposal could not be read",
            field_errors=[("assumptions", "must be a list of strings")],
        )
    # A null field means "not given": the model's default applies, as for a flag not given.
    # Every nullable field defaults to None, so this only differs for fields that cannot be
    # null, where the model would otherwise refuse the whole proposal over an omission.
    fields = {key: _exact(value) for key, value in args.items() if value is not None}
    return fields, [item.strip() for item in raw if item.strip()]


def _exact(value: Any) -> Any:
    """Floats from the transport as the decimals the model wrote. Providers hand tool args
    through ``json.loads``, which turns ``0.9`` into a float; its shortest repr is the literal
    the model wrote, so nothing is rounded. Models given a float directly still refuse it."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact(item) for item in value]
    return value


def _validated(
    kind: _Kind[_Target],
    args: dict[str, Any],
    assumptions: list[str],
    text: str,
    market: MarketFacts,
) -> Compiled[_Target] | Clarify | Refused:
    try:
        value = kind.target.model_validate(args)
    except ValidationError as error:
        return Refused(
            reason=f"the proposed {kind.noun} is not valid", field_errors=_field_errors(error)
        )
    questions = kind.questions(value, market)
    if questions:
        return Clarify(questions=questions)
    return Compiled(value=value, assumptions=assumptions, source_text=text)


def _field_errors(error: ValidationError) -> list[tuple[str, str]]:
    """``(dotted.path, message)`` per error; ``(whole)`` for a check across fields."""
    errors = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(whole)"
        errors.append((where, str(item["msg"]).removeprefix("Value error, ")))
    return errors


# -- what the market cannot serve -------------------------------------------------------------


def _unknown_regions(wanted: list[str], market: MarketFacts, who: str) -> list[str]:
    unknown = [region for region in wanted if region not in market.regions]
    if not unknown:
        return []
    known = ", ".join(market.regions) or "none yet"
    return [
        f"The market has no region {', '.join(repr(r) for r in unknown)} ({who}). "
        f"Which of its regions do you mean: {known}? (No region at all means every region.)"
    ]


def _unknown_grids(wanted: list[Grid], market: MarketFacts, who: str) -> list[str]:
    unknown = [grid.value for grid in wanted if grid not in market.grids]
    if not unknown:
        return []
    known = ", ".join(grid.value for grid in market.grids) or "none"
    return [f"The market does not run {', '.join(unknown)} ({who}); which of {known} then?"]


def _policy_questions(policy: FarmerPolicy, market: MarketFacts) -> list[str]:
    return [
        *_unknown_regions(policy.regions, market, "the regions to serve"),
        *_unknown_grids(policy.grids, market, "the grids to serve"),
    ]


def _mandate_questions(mandate: Mandate, market: MarketFacts) -> list[str]:
    questions: list[str] = []
    for workload in mandate.workloads:
        who = f"workload {workload.workload_id}"
        questions += _unknown_regions(workload.regions, market, who)
        questions += _unknown_grids(workload.grids, market, who)
    if mandate.prefer_grid is not None:
        questions += _unknown_grids([mandate.prefer_grid], market, "the preferred grid")
    return questions


_POLICY = _Kind(
    "policy", FarmerPolicy, ProposePolicy, PROPOSE_POLICY, _POLICY_PROMPT, _policy_questions
)
_MANDATE = _Kind(
    "mandate", Mandate, ProposeMandate, PROPOSE_MANDATE, _MANDATE_PROMPT, _mandate_questions
)
