"""A chat model that answers from a script: real LangChain plumbing, no provider, no network.

A script is a list of steps, taken in order; once the last step is reached it repeats
forever. A step is a JSON object:

``{"tool_calls": [{"name": "Move", "args": {...}}], "content": "...", "usage": {...}}``
    an answer with tool calls (each given an id), optional text and token usage
    (``{"input_tokens": 120, "output_tokens": 30}``; 0/0 when absent);
``{"content": "plain text"}``
    an answer with no tool call;
``{"error": "message"}``
    the call raises ``RuntimeError(message)``, as a failing provider would.

Any step may also carry ``"delay_s": 2.5``: the call takes that long first (a slow model).
When the model has a ``timeout_s`` and a step's delay exceeds it, the call waits
``timeout_s`` and then raises ``TimeoutError``, as a provider client with a timeout would.

``HERO_LLM=scripted:PATH`` (see :mod:`agents.strategies.chat`) loads a script from a JSON file.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

__all__ = ["ScriptStep", "ScriptedChatModel", "ScriptedToolCall", "ScriptedUsage"]


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


class ScriptedUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0


class ScriptStep(BaseModel):
    """One scripted answer: tool calls and/or text, or a provider error; maybe slow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool_calls: list[ScriptedToolCall] | None = None
    content: str | None = None
    usage: ScriptedUsage = Field(default_factory=ScriptedUsage)
    error: str | None = None
    delay_s: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptStep:
        if self.error is not None:
            if self.tool_calls is not None or self.content is not None:
                raise ValueError("an error step has no tool_calls or content")
        elif self.tool_calls is None and self.content is None:
            raise ValueError("a step needs tool_calls, content or error")
        return self


_STEPS: TypeAdapter[list[ScriptStep]] = TypeAdapter(list[ScriptStep])


def _describe(error: ValidationError) -> str:
    """``step 2 (tool_calls.0.name): Field required; ...`` from a validation error."""
    parts: list[str] = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        where = ""
        if loc and isinstance(loc[0], int):
            where = f"step {loc[0] + 1}"
            loc = loc[1:]
        field = ".".join(str(part) for part in loc)
        if field:
            where = f"{where} ({field})" if where else field
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model replaying a script; tools and structured output work against it.

    Build it with :meth:`from_steps` or :meth:`from_file`. Safe to ``invoke`` from several
    threads at once: each call takes the next step under a lock.
    """

    steps: list[ScriptStep] = Field(min_length=1)
    timeout_s: PositiveFloat | None = None
    # GenericFakeChatModel's own answer source; unused here.
    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)

    @classmethod
    def from_steps(
        cls, steps: Sequence[dict[str, Any]], *, timeout_s: float | None = None
    ) -> ScriptedChatModel:
        """A model answering ``steps`` in order. Raises ``ValueError`` for a bad script."""
        if not isinstance(steps, Sequence) or isinstance(steps, str | bytes):
            raise ValueError("a script is a list of steps")
        if not steps:
            raise ValueError("a script needs at least one step")
        try:
            parsed = _STEPS.validate_python(list(steps))
        except ValidationError as exc:
            raise ValueError(f"bad script: {_describe(exc)}") from None
        return cls(steps=parsed, timeout_s=timeout_s)

    @classmethod
    def from_file(cls, path: str | Path, *, timeout_s: float | None = None) -> ScriptedChatModel:
        """A model answering the steps of a JSON file holding a list of step objects."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"script {source}: cannot read it: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"script {source}: not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise ValueError(
                f"script {source}: expected a JSON list of step objects, "
                f"got a JSON {type(data).__name__}"
            )
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise ValueError(
                    f"script {source}: step {index + 1} is a JSON {type(item).__name__}, "
                    "not an object"
                )
        try:
            return cls.from_steps(data, timeout_s=timeout_s)
        except ValueError as exc:
            raise ValueError(f"script {source}: {exc}") from None

    @property
    def calls(self) -> int:
        """How many calls the model has answered (or failed) so far."""
        with self._lock:
            return self._calls

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The script decides what is called; binding tools changes nothing."""
        return self

    # -- answering ----------------------------------------------------------------------

    def _next_step(self) -> tuple[int, ScriptStep]:
        with self._lock:
            call = self._calls
            self._calls += 1
        return call, self.steps[min(call, len(self.steps) - 1)]

    def _wait(self, step: ScriptStep) -> tuple[float, bool]:
        """How long to wait before answering, and whether the call then times out."""
        if self.timeout_s is not None and step.delay_s > self.timeout_s:
            return self.timeout_s, True
        return step.delay_s, False

    def _answer(self, call: int, step: ScriptStep, timed_out: bool) -> ChatResult:
        if timed_out:
            raise TimeoutError(f"scripted model timed out after {self.timeout_s}s")
        if step.error is not None:
            raise RuntimeError(step.error)
        usage = step.usage
        message = AIMessage(
            content=step.content or "",
            tool_calls=[
                {
                    "name": tool_call.name,
                    "args": dict(tool_call.args),
                    "id": f"call_{call + 1}_{index + 1}",
                    "type": "tool_call",
                }
                for index, tool_call in enumerate(step.tool_calls or [])
            ],
            usage_metadata={
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
            id=f"scripted-{call + 1}",
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, step = self._next_step()
        delay, timed_out = self._wait(step)
        if delay:
            time.sleep(delay)
        return self._answer(call, step, timed_out)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        call, step = self._next_step()
        delay, timed_out = self._wait(step)
        if delay:
            await asyncio.sleep(delay)
        return self._answer(call, step, timed_out)

    @staticmethod
    def _as_chunk(result: ChatResult) -> ChatGenerationChunk:
        """The whole answer as one chunk, tool calls included (the parent drops them)."""
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content=message.content,
                id=message.id,
                tool_call_chunks=[
                    tool_call_chunk(
                        name=tc["name"], args=json.dumps(tc["args"]), id=tc["id"], index=index
                    )
                    for index, tc in enumerate(message.tool_calls)
                ],
                usage_metadata=message.usage_metadata,
                chunk_position="last",
            )
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunk = self._as_chunk(self._generate(messages, stop=stop, **kwargs))
        if run_manager:
            run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunk = self._as_chunk(await self._agenerate(messages, stop=stop, **kwargs))
        if run_manager:
            await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
        yield chunk

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"
