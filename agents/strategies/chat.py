"""The chat model ``HERO_LLM`` names: ``provider:model``, built with LangChain.

===========================  ==========================================  ================
spec                         model                                       extra to install
===========================  ==========================================  ================
``openai:gpt-4o-mini``       ``langchain_openai.ChatOpenAI``             ``openai``
``anthropic:claude-...``     ``langchain_anthropic.ChatAnthropic``       ``anthropic``
``ollama:llama3.1``          ``langchain_ollama.ChatOllama``             ``ollama``
``scripted:PATH``            :class:`~agents.strategies.scripted.        (none)
                             ScriptedChatModel` from a JSON script
===========================  ==========================================  ================

Provider packages are imported only when asked for. Credentials come from each package's
usual environment variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``); Ollama's server is
``OLLAMA_HOST`` when set, else the package's default.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Final

from langchain_core.language_models import BaseChatModel

from agents.strategies.scripted import ScriptedChatModel

__all__ = ["SUPPORTED_PROVIDERS", "LlmConfigError", "chat_model"]

#: Provider -> (module, distribution, extra); ``scripted`` needs nothing more.
_PACKAGES: Final[dict[str, tuple[str, str, str]]] = {
    "openai": ("langchain_openai", "langchain-openai", "openai"),
    "anthropic": ("langchain_anthropic", "langchain-anthropic", "anthropic"),
    "ollama": ("langchain_ollama", "langchain-ollama", "ollama"),
}

#: The providers a spec may name.
SUPPORTED_PROVIDERS: Final[tuple[str, ...]] = (*_PACKAGES, "scripted")

_FORMS: Final = (
    "openai:MODEL (e.g. openai:gpt-4o-mini), anthropic:MODEL, ollama:MODEL "
    "(e.g. ollama:llama3.1) or scripted:PATH (a JSON script)"
)


class LlmConfigError(ValueError):
    """``HERO_LLM`` names no model this installation can build."""


def _parse(spec: str) -> tuple[str, str]:
    provider, colon, model = spec.partition(":")
    provider, model = provider.strip().lower(), model.strip()
    if not colon:
        raise LlmConfigError(f"HERO_LLM={spec!r} is not provider:model; use {_FORMS}")
    if provider not in SUPPORTED_PROVIDERS:
        raise LlmConfigError(f"HERO_LLM={spec!r}: unknown provider {provider!r}; use {_FORMS}")
    if not model:
        what = "script path" if provider == "scripted" else "model"
        raise LlmConfigError(f"HERO_LLM={spec!r} names no {what}; use {_FORMS}")
    return provider, model


def _import(spec: str, provider: str) -> ModuleType:
    module, distribution, extra = _PACKAGES[provider]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        detail = "" if exc.name == module else f" (importing it failed: {exc})"
        raise LlmConfigError(
            f"HERO_LLM={spec} needs {distribution}: pip install 'hero-grid[{extra}]'{detail}"
        ) from exc


def chat_model(spec: str, *, timeout_s: float | None = None) -> BaseChatModel:
    """The chat model ``spec`` (``provider:model``) names, answering within ``timeout_s``.

    Raises :class:`LlmConfigError` for a malformed spec, an unknown provider, a provider
    package that is not installed, a bad script, or a model its package refuses to build.
    Builds clients only: nothing is sent until the model is called.
    """
    provider, model = _parse(spec)
    if provider == "scripted":
        try:
            return ScriptedChatModel.from_file(model, timeout_s=timeout_s)
        except ValueError as exc:
            raise LlmConfigError(f"HERO_LLM={spec}: {exc}") from exc

    package = _import(spec, provider)
    kwargs: dict[str, Any] = {"model": model, "temperature": 0}
    if provider == "openai":
        factory = package.ChatOpenAI
        kwargs["timeout"] = timeout_s
    elif provider == "anthropic":
        factory = package.ChatAnthropic
        kwargs["timeout"] = timeout_s
    else:
        factory = package.ChatOllama
        host = os.environ.get("OLLAMA_HOST", "").strip()
        if host:
            kwargs["base_url"] = host
        if timeout_s is not None:
            kwargs["client_kwargs"] = {"timeout": timeout_s}
    try:
        built = factory(**kwargs)
    except Exception as exc:  # the package's own validation, e.g. a missing API key
        raise LlmConfigError(
            f"HERO_LLM={spec}: {factory.__name__} could not be built: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(built, BaseChatModel):  # pragma: no cover - a broken package
        raise LlmConfigError(f"HERO_LLM={spec}: {factory.__name__} is not a chat model")
    return built
