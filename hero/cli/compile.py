"""``hero farmer policy compile`` and ``hero offtaker mandate compile``: a policy or a mandate
from plain language, through the language model ``HERO_LLM`` names.

The model only proposes: its proposal is validated as a hand-written policy is, shown as a
diff against the current one, and written (through the market service, with the text as
``source_text``) only once the person confirms. Exit codes: 0 applied, 1 not applied (declined,
or the model failed), 2 refused (invalid proposal, unknown farm, no model configured),
3 the model has questions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import TypeAdapter, ValidationError
from rich.markup import escape

from hero.cli.common import AsJson, DataDir, console, fail, print_json, settings_for
from hero.cli.market import farm_of_node, load_report, market_report, opened_store, send
from hero.cli.policies import describe_policy, mandate_app, policy_app
from hero.cli.tables import fmt_money
from hero.market.fleet import REGIONS
from hero.market.service import farm_stream
from hero.market.views import MarketReport
from hero.store import EventStore
from schemas import (
    FarmerPolicy,
    FarmerPolicySet,
    Mandate,
    SetFarmerPolicy,
    SetOfftakerMandate,
    new_id,
)
from schemas.ids import OfftakerId

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from agents.strategies.compiler import Clarify, Compiled, MarketFacts, Refused

__all__ = ["mandate_compile", "policy_compile"]

#: Exit codes beyond 0 (applied) and 2 (refused, or a usage error).
NOT_APPLIED = 1
QUESTIONS = 3

Text = Annotated[str, typer.Argument(help="what you want, in plain language (quote it)")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="apply without asking")]


# -- the model and the market ---------------------------------------------------------------------


def _model(data_dir: Path | None) -> BaseChatModel:
    """The chat model ``HERO_LLM`` names; exit 2 when none is, or it cannot be built."""
    settings = settings_for(data_dir)
    if not settings.llm:
        fail(
            "no language model configured: set HERO_LLM=provider:model "
            "(e.g. HERO_LLM=openai:gpt-4o-mini, or ollama:llama3.1)"
        )
    # Imported here: LangChain loads only for the commands that use it.
    from agents.strategies.chat import LlmConfigError, chat_model

    try:
        return chat_model(settings.llm, timeout_s=settings.llm_timeout_s)
    except LlmConfigError as error:
        fail(escape(str(error)))  # rich would take "hero-grid[openai]" for markup


def _facts(report: MarketReport) -> MarketFacts:
    """The regions the market names (the fleet's, and any a farm or node registered with)."""
    from agents.strategies.compiler import MarketFacts

    seen = {farm.region for farm in report.farms} | {node.region for node in report.nodes}
    regions = [*REGIONS, *sorted(seen - set(REGIONS))]
    return MarketFacts(regions=regions)


def _current_policy(store: EventStore, farm: str, node: str | None) -> FarmerPolicy | None:
    """What applies now: the node's own policy, else the farm's (as the farmer agent reads it)."""
    farm_wide: FarmerPolicy | None = None
    own: FarmerPolicy | None = None
    for row in store.read_stream(farm_stream(farm)):
        if row.type != FarmerPolicySet.__name__:
            continue
        event = row.envelope().decode()
        if not isinstance(event, FarmerPolicySet):
            continue
        if event.node_id is None:
            farm_wide = event.policy
        elif event.node_id == node:
            own = event.policy
    return own or farm_wide


def _compile_error(error: Exception) -> NoReturn:
    fail(escape(f"{error}; nothing was written"), code=NOT_APPLIED)


# -- showing an outcome ---------------------------------------------------------------------------


def _field_errors_json(refused: Refused) -> list[dict[str, str]]:
    return [{"field": field, "message": message} for field, message in refused.field_errors]


def _refused(refused: Refused, noun: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json(
            {
                "outcome": "refused",
                "reason": refused.reason,
                "field_errors": _field_errors_json(refused),
            }
        )
        raise typer.Exit(2)
    lines = "".join(f"\n  - {field}: {message}" for field, message in refused.field_errors)
    fail(escape(f"{refused.reason}; no {noun} was written{':' if lines else ''}{lines}"))


def _questions(clarify: Clarify, noun: str, as_json: bool) -> NoReturn:
    if as_json:
        print_json({"outcome": "questions", "questions": clarify.questions})
    else:
        console.print(f"The {noun} needs answers first (nothing was written):")
        for number, question in enumerate(clarify.questions, 1):
            console.print(f"  {number}. {escape(question)}")
        console.print("Say it again with the answers in the text.")
    raise typer.Exit(QUESTIONS)


def _show_proposal(compiled: Compiled[Any], changes: list[str], target: str) -> None:
    if compiled.assumptions:
        console.print("assumptions:")
        for assumption in compiled.assumptions:
            console.print(f"  - {escape(assumption)}")
    if not changes:
        console.print(f"no change to the {target}")
        return
    console.print(f"changes to the {target}:")
    for line in changes:
        colour = "red" if line.startswith("-") else "green"
        console.print(f"  [{colour}]{escape(line)}[/]")


def _confirmed(noun: str, yes: bool, as_json: bool) -> bool:
    """``--yes``, or the person's answer; no answer at all (stdin closed) is a no."""
    if yes:
        return True
    question = f"Apply this {noun}?"
    if as_json:
        # The question on stderr, so stdout stays one JSON document (click's confirm would
        # still put the prompt's last character on stdout).
        typer.echo(f"{question} [y/N]: ", nl=False, err=True)
        answer = sys.stdin.readline()
        if not answer.endswith("\n"):
            typer.echo("", err=True)
        return answer.strip().lower() in ("y", "yes")
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:  # end of input: end the prompt's line, as an answer would have
        typer.echo("")
        return False


def _outcome(
    outcome: str, noun: str, compiled: Compiled[Any], changes: list[str], **ids: str | None
) -> dict[str, Any]:
    """The JSON of a proposal: ``compiled`` (not applied) or ``applied``."""
    return {
        "outcome": outcome,
        **ids,
        noun: compiled.value.model_dump(mode="json"),
        "assumptions": compiled.assumptions,
        "diff": changes,
        "source_text": compiled.source_text,
    }


def _settled(result: Compiled[Any] | Clarify | Refused, noun: str, as_json: bool) -> Compiled[Any]:
    """The compiled proposal; questions and refusals end the command here."""
    from agents.strategies.compiler import Clarify, Refused

    if isinstance(result, Refused):
        _refused(result, noun, as_json)
    if isinstance(result, Clarify):
        _questions(result, noun, as_json)
    return result


def _declined(noun: str, as_json: bool, payload: dict[str, Any]) -> NoReturn:
    if as_json:
        print_json(payload)
    else:
        console.print(f"not applied: the {noun} is unchanged")
    raise typer.Exit(NOT_APPLIED)


# -- hero farmer policy compile -------------------------------------------------------------------


@policy_app.command("compile")
def policy_compile(
    farm: Annotated[str, typer.Argument(help="the farm's id")],
    text: Text,
    node: Annotated[str | None, typer.Option(help="for this node of the farm only")] = None,
    yes: Yes = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """FARM's policy from plain language: shown as a diff, applied once confirmed.

    TEXT like "auto-accept Grid 4 reservations in Europe above 0.9x market price, keep 20%
    free, never more than 12 months". Exit 3 when the model has questions, 2 when its policy
    is not valid, 1 when not applied; the model is HERO_LLM (provider:model).
    """
    from agents.strategies.compiler import CompileError, compile_policy
    from agents.strategies.diff import diff

    model = _model(data_dir)
    with opened_store(data_dir) as store:
        if store.stream_version(farm_stream(farm)) == 0:
            fail(f"farm {farm} is not registered")
        if node is not None and farm_of_node(store, node) != farm:
            fail(f"node {node} is not a node of farm {farm}")
        current = _current_policy(store, farm, node)
        market = _facts(load_report(store))
    try:
        result = compile_policy(model, text, current=current, market=market)
    except CompileError as error:
        _compile_error(error)
    compiled: Compiled[FarmerPolicy] = _settled(result, "policy", as_json)
    target = f"policy of node {node} of farm {farm}" if node else f"policy of farm {farm}"
    changes = diff(current, compiled.value)
    if not as_json:
        _show_proposal(compiled, changes, target)
    if not _confirmed("policy", yes, as_json):
        proposal = _outcome("compiled", "policy", compiled, changes, farm_id=farm, node_id=node)
        _declined("policy", as_json, proposal)
    command = SetFarmerPolicy(
        command_id=new_id("cmd"),
        farm_id=farm,
        node_id=node,
        policy=compiled.value,
        source_text=text,
    )
    with opened_store(data_dir) as store:
        send(store, command)
    if as_json:
        print_json(_outcome("applied", "policy", compiled, changes, farm_id=farm, node_id=node))
        return
    where = f"node {node} of farm {farm}" if node else f"farm {farm}"
    console.print(f"policy set for {where}: {escape(describe_policy(compiled.value))}")


# -- hero offtaker mandate compile ----------------------------------------------------------------


def _describe_mandate(mandate: Mandate) -> str:
    workloads = ", ".join(f"{w.workload_id} x{w.replicas}" for w in mandate.workloads)
    return (
        f"{workloads}; budget {fmt_money(mandate.budget_month)}/month, "
        f"at most {fmt_money(mandate.max_price_cu_hour)}/CU-h"
    )


@mandate_app.command("compile")
def mandate_compile(
    offtaker: Annotated[str, typer.Argument(help="the offtaker's id")],
    text: Text,
    yes: Yes = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """OFFTAKER's mandate from plain language: shown as a diff, applied once confirmed.

    TEXT like "3 web servers in Europe, 2 cores, 4 GB RAM and 50 GB SSD each, at most 500 USD
    a month and 0.05 USD per CU-hour". Exit 3 when the model has questions, 2 when its
    mandate is not valid, 1 when not applied; the model is HERO_LLM (provider:model).
    """
    from agents.strategies.compiler import CompileError, compile_mandate
    from agents.strategies.diff import diff

    try:
        TypeAdapter(OfftakerId).validate_python(offtaker)
    except ValidationError:
        fail(f"{offtaker!r} is not an offtaker id (up to 200 letters, digits and ._:@-)")
    model = _model(data_dir)
    report = market_report(data_dir)
    current = report.mandates.get(offtaker)
    try:
        result = compile_mandate(model, text, current=current, market=_facts(report))
    except CompileError as error:
        _compile_error(error)
    compiled: Compiled[Mandate] = _settled(result, "mandate", as_json)
    changes = diff(current, compiled.value)
    if not as_json:
        _show_proposal(compiled, changes, f"mandate of {offtaker}")
    if not _confirmed("mandate", yes, as_json):
        proposal = _outcome("compiled", "mandate", compiled, changes, offtaker_id=offtaker)
        _declined("mandate", as_json, proposal)
    command = SetOfftakerMandate(
        command_id=new_id("cmd"), offtaker_id=offtaker, mandate=compiled.value, source_text=text
    )
    with opened_store(data_dir) as store:
        send(store, command)
    if as_json:
        print_json(_outcome("applied", "mandate", compiled, changes, offtaker_id=offtaker))
        return
    console.print(f"mandate set for {offtaker}: {escape(_describe_mandate(compiled.value))}")
