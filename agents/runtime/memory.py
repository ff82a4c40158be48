"""Rough memory accounting for agents: a deep ``sys.getsizeof`` walk and the process RSS.

The walk counts what one brain owns: its attributes, containers, strings, numbers and
pydantic models, each object once. It does not count what brains share by design (classes,
functions, modules, enum members), so it estimates the cost of one more agent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from enum import Enum
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

__all__ = ["deep_size", "mean_deep_size", "rss_bytes"]

_SHARED = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType, Enum)
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _slot_names(cls: type) -> Iterable[str]:
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        yield from (slots,) if isinstance(slots, str) else slots


def deep_size(root: object, *, exclude: Iterable[object] = ()) -> int:
    """Bytes reachable from ``root``, each object once, shared kinds and ``exclude`` left out."""
    seen = {id(obj) for obj in exclude}
    stack: list[Any] = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj, 0)
        if isinstance(obj, _LEAVES):
            continue
        if isinstance(obj, Mapping):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            attributes = getattr(obj, "__dict__", None)
            if attributes is not None:
                stack.append(attributes)
            for name in _slot_names(type(obj)):
                if name not in ("__dict__", "__weakref__"):
                    value = getattr(obj, name, None)
                    if value is not None:
                        stack.append(value)
    return total


def mean_deep_size(objects: list[object], *, exclude: Iterable[object] = ()) -> int:
    """The mean deep size of ``objects``, each measured on its own."""
    if not objects:
        return 0
    left_out = list(exclude)
    return sum(deep_size(obj, exclude=left_out) for obj in objects) // len(objects)


def rss_bytes() -> int:
    """This process's resident set size (Linux); 0 where /proc is not available."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
