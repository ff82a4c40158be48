"""What changes between two policies or mandates, as the lines a person confirms.

Pure (no chat model): ``hero farmer policy compile`` and ``hero offtaker mandate compile``
show it before they write what :mod:`agents.strategies.compiler` proposed.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from schemas import Money

__all__ = ["diff"]

_Model = TypeVar("_Model", bound=BaseModel)


def diff(current: _Model | None, new: _Model) -> list[str]:
    """What changes from ``current`` to ``new``, one ``- path: old`` / ``+ path: new`` line
    each, only for fields that change; nested fields dotted (``sla.uptime_pct``,
    ``workloads.0.replicas``), money as ``0.12 USD``. An unset field (None) has no line.

    Without a current one, every field ``new`` sets away from its default, as ``+``."""
    old = _leaves(current) if current is not None else _default_leaves(type(new))
    now = _leaves(new)
    lines: list[str] = []
    for path in dict.fromkeys([*now, *old]):
        before, after = old.get(path), now.get(path)
        if before == after:
            continue
        if before is not None and current is not None:
            lines.append(f"- {path}: {before}")
        if after is not None:
            lines.append(f"+ {path}: {after}")
    return lines


def _leaves(model: BaseModel) -> dict[str, str | None]:
    return dict(_walk(model, ""))


def _walk(value: Any, path: str) -> Iterator[tuple[str, str | None]]:
    """``(dotted.path, shown value)`` for every leaf under ``value``, in field order; an unset
    field is ``None`` (kept so that both sides of a diff list their paths in one order)."""
    if value is None:
        yield path, None
    elif isinstance(value, Money):
        yield path, str(value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}.{index}")
    elif isinstance(value, list):
        yield path, "[" + ", ".join(_shown(v) for v in value) + "]"
    else:
        yield path, _shown(value)


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.0000005, not 5E-7
    return str(value)


def _default_leaves(model: type[BaseModel]) -> dict[str, str | None]:
    """The leaves of a model's defaults; required fields have none, so they always show."""
    leaves: dict[str, str | None] = {}
    for name, info in model.model_fields.items():
        if not info.is_required():
            leaves.update(_walk(info.get_default(call_default_factory=True), name))
    return leaves
