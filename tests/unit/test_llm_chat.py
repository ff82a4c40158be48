"""HERO_LLM specs -> chat models, and the scripted chat model (real LangChain, no provider)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from agents.strategies.chat import SUPPORTED_PROVIDERS, LlmConfigError, chat_model
from agents.strategies.moves import Move
from agents.strategies.scripted import ScriptedChatModel

MOVE_CALL = {
    "tool_calls": [{"name": "Move", "args": {"action": "accept", "rationale": "fair price"}}],
    "usage": {"input_tokens": 120, "output_tokens": 30},
}


def write_script(tmp_path, steps, name="script.json"):
    path = tmp_path / name
    path.write_text(json.dumps(steps), encoding="utf-8")
    return path


# -- specs --------------------------------------------------------------------------------


def test_supported_providers():
    assert set(SUPPORTED_PROVIDERS) == {"openai", "anthropic", "ollama", "scripted"}


def test_config_error_is_a_value_error():
    assert issubclass(LlmConfigError, ValueError)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gpt-4o-mini", "is not provider:model"),
        ("", "is not provider:model"),
        ("openai:", "names no model"),
        ("ollama:   ", "names no model"),
        ("scripted:", "names no script path"),
        ("mistral:large", "unknown provider 'mistral'"),
        (":gpt-4o-mini", "unknown provider ''"),
    ],
)
def test_malformed_specs_name_the_accepted_forms(spec, expected):
    with pytest.raises(LlmConfigError) as caught:
        chat_model(spec)
    message = str(caught.value)
    assert expected in message
    assert repr(spec) in message
    for form in ("openai:MODEL", "anthropic:MODEL", "ollama:MODEL", "scripted:PATH"):
        assert form in message


@pytest.mark.parametrize(
    ("spec", "module", "message"),
    [
        (
            "openai:gpt-4o-mini",
            "langchain_openai",
            "HERO_LLM=openai:gpt-4o-mini needs langchain-openai: pip install 'hero-grid[openai]'",
        ),
        (
            "anthropic:claude-3-5-haiku-latest",
            "langchain_anthropic",
            "HERO_LLM=anthropic:claude-3-5-haiku-latest needs langchain-anthropic: "
            "pip install 'hero-grid[anthropic]'",
        ),
        (
            "ollama:llama3.1",
            "langchain_ollama",
            "HERO_LLM=ollama:llama3.1 needs langchain-ollama: pip install 'hero-grid[ollama]'",
        ),
    ],
)
def test_a_missing_provider_package_names_the_extra(monkeypatch, spec, module, message):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(LlmConfigError) as caught:
        chat_model(spec)
    assert str(caught.value) == message
    assert isinstance(caught.value.__cause__, ImportError)


@pytest.mark.parametrize(
    ("spec", "module", "class_name"),
    [
        ("openai:gpt-4o-mini", "langchain_openai", "ChatOpenAI"),
        ("anthropic:claude-3-5-haiku-latest", "langchain_anthropic", "ChatAnthropic"),
        ("ollama:llama3.1", "langchain_ollama", "ChatOllama"),
    ],
)
def test_an_installed_provider_builds_without_network(monkeypatch, spec, module, class_name):
    pytest.importorskip(module)  # the extras are not part of the dev environment
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434")
    model = chat_model(spec, timeout_s=7.5)
    assert type(model).__name__ == class_name
    assert model.temperature == 0
    if class_name == "ChatOllama":
        assert model.base_url == "http://gpu-box:11434"
        assert model.client_kwargs == {"timeout": 7.5}
    elif class_name == "ChatOpenAI":
        assert model.request_timeout == 7.5
    else:
        assert model.default_request_timeout == 7.5


# -- the scripted provider ----------------------------------------------------------------


def test_scripted_spec_loads_the_file(tmp_path):
    path = write_script(tmp_path, [MOVE_CALL, {"content": "no idea"}])
    model = chat_model(f"scripted:{path}", timeout_s=3)
    assert isinstance(model, ScriptedChatModel)
    assert model.timeout_s == 3
    first = model.invoke("hello")
    assert first.tool_calls[0]["name"] == "Move"
    assert first.tool_calls[0]["args"] == {"action": "accept", "rationale": "fair price"}
    assert model.invoke("hello").content == "no idea"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"content": "x"}', "expected a JSON list of step objects, got a JSON dict"),
        ("[1, 2]", "step 1 is a JSON int, not an object"),
        ("[{", "not valid JSON"),
        ("[]", "a script needs at least one step"),
        ('[{"content": "ok"}, {"contnet": "typo"}]', "step 2 (contnet): Extra inputs"),
        ('[{"error": "x", "content": "y"}]', "an error step has no tool_calls or content"),
        ('[{"delay_s": 1}]', "a step needs tool_calls, content or error"),
        ('[{"tool_calls": [{"args": {}}]}]', "step 1 (tool_calls.0.name): Field required"),
    ],
)
def test_a_bad_script_file_names_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json") as direct:
        ScriptedChatModel.from_file(path)
    assert problem in str(direct.value)
    with pytest.raises(LlmConfigError) as via_spec:
        chat_model(f"scripted:{path}")
    assert str(via_spec.value).startswith(f"HERO_LLM=scripted:{path}: script {path}: ")
    assert problem in str(via_spec.value)


def test_a_missing_script_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(LlmConfigError, match=r"absent\.json: cannot read it"):
        chat_model(f"scripted:{path}")


def test_from_steps_rejects_a_non_list():
    with pytest.raises(ValueError, match="a script is a list of steps"):
        ScriptedChatModel.from_steps({"content": "x"})  # type: ignore[arg-type]


# -- scripted answers ---------------------------------------------------------------------


def test_steps_are_taken_in_order_and_the_last_repeats():
    model = ScriptedChatModel.from_steps(
        [{"content": "one"}, {"content": "two"}, {"content": "last"}]
    )
    answers = [model.invoke("x").content for _ in range(5)]
    assert answers == ["one", "two", "last", "last", "last"]
    assert model.calls == 5


def test_tool_calls_carry_ids_and_usage():
    model = ScriptedChatModel.from_steps(
        [
            {
                "tool_calls": [
                    {"name": "Move", "args": {"action": "accept", "rationale": "a"}},
                    {"name": "Move", "args": {"action": "decline", "rationale": "b"}},
                ],
                "content": "thinking",
                "usage": {"input_tokens": 120, "output_tokens": 30},
            },
            {"content": "plain"},
        ]
    )
    first = model.invoke("x")
    assert first.content == "thinking"
    ids = [call["id"] for call in first.tool_calls]
    assert all(ids)
    assert len(set(ids)) == 2
    assert first.usage_metadata == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    second = model.invoke("x")
    assert second.tool_calls == []
    assert second.usage_metadata == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    third = model.invoke("x")
    assert third.id != second.id


def test_an_error_step_raises_runtime_error():
    model = ScriptedChatModel.from_steps([{"error": "rate limited"}, {"content": "fine"}])
    with pytest.raises(RuntimeError, match=r"^rate limited$"):
        model.invoke("x")
    assert model.invoke("x").content == "fine"


def test_structured_output_parses_the_scripted_move():
    model = ScriptedChatModel.from_steps(
        [
            {
                "tool_calls": [
                    {
                        "name": "Move",
                        "args": {"action": "counter", "price_hour": "0.12", "rationale": "r"},
                    }
                ]
            },
            {"content": "I would accept"},
            {"tool_calls": [{"name": "Move", "args": {"action": "buy", "rationale": "r"}}]},
        ]
    )
    structured = model.with_structured_output(Move, include_raw=True)
    good = structured.invoke("x")
    assert good["parsed"] == Move(action="counter", price_hour=Decimal("0.12"), rationale="r")
    assert good["parsing_error"] is None
    text = structured.invoke("x")
    assert text["parsed"] is None
    assert text["parsing_error"] is None
    assert text["raw"].content == "I would accept"
    bad = structured.invoke("x")
    assert bad["parsed"] is None
    assert "action" in str(bad["parsing_error"])


def test_streaming_and_async_paths_keep_the_tool_call():
    model = ScriptedChatModel.from_steps([MOVE_CALL])
    chunks = list(model.stream("x"))
    assert len(chunks) == 1
    assert chunks[0].tool_calls[0]["args"] == {"action": "accept", "rationale": "fair price"}
    assert chunks[0].usage_metadata["total_tokens"] == 150

    structured = model.with_structured_output(Move, include_raw=True)
    result = asyncio.run(structured.ainvoke("x"))
    assert result["parsed"] == Move(action="accept", rationale="fair price")

    async def streamed():
        return [part async for part in model.with_structured_output(Move).astream("x")]

    assert asyncio.run(streamed())[-1] == Move(action="accept", rationale="fair price")
    assert model.calls == 3


def test_concurrent_calls_take_each_step_once():
    steps = [{"content": f"step {n}"} for n in range(40)]
    model = ScriptedChatModel.from_steps(steps)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: model.invoke("x").content, range(40)))
    assert sorted(answers) == sorted(f"step {n}" for n in range(40))
    assert model.calls == 40


def test_a_delayed_step_is_slow():
    model = ScriptedChatModel.from_steps([{"content": "late", "delay_s": 0.2}])
    started = time.monotonic()
    assert model.invoke("x").content == "late"
    assert time.monotonic() - started >= 0.2


def test_a_delay_beyond_the_timeout_times_out():
    model = ScriptedChatModel.from_steps([{"content": "too late", "delay_s": 30}], timeout_s=0.05)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0\.05s"):
        model.invoke("x")
    assert time.monotonic() - started < 5

    async def call():
        return await model.ainvoke("x")

    with pytest.raises(TimeoutError):
        asyncio.run(call())
