"""A codec compiled from type hints: each type gets a pair of functions turning its values into
JSON values and back, made once per type, so decoding a large state costs one call per value
and no look-up of what the value is.

Generic over dataclasses (their fields, in order), pydantic models (their JSON form, validated
back), enums, ``Literal``, ``X | None``, tuples, lists, sets, frozensets, deques (their
field's ``maxlen`` kept), dicts (string keys as a JSON object, other keys as pairs), ``Decimal``
(its exact text), ``datetime`` (ISO 8601 with its offset), and the scalars. Any other type is
refused when the codec is compiled, not when a value meets it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel

__all__ = ["Codec", "Shape", "codec_for", "describe"]

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


class Shape(Exception):
    """A value is not of the shape its type says (raised while decoding)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Codec:
    encode: Encode
    decode: Decode


_CACHE: dict[Any, Codec] = {}


def codec_for(hint: Any, *, maxlen: int | None = None) -> Codec:
    key = (hint, maxlen)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = _compile(hint, maxlen)
    return found


def _identity(value: Any) -> Any:
    return value


def _scalar(kind: type) -> Codec:
    def decode(value: Any) -> Any:
        if type(value) is not kind:
            raise Shape(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return Codec(_identity, decode)


def _decimal_decode(value: Any) -> Decimal:
    if type(value) is not str:
        raise Shape(f"expected a decimal's text, got {type(value).__name__}")
    return Decimal(value)


def _datetime_decode(value: Any) -> datetime:
    if type(value) is not str:
        raise Shape(f"expected a datetime's text, got {type(value).__name__}")
    return datetime.fromisoformat(value)


def _none_decode(value: Any) -> None:
    if value is not None:
        raise Shape(f"expected null, got {type(value).__name__}")


_SIMPLE: dict[Any, Codec] = {
    int: _scalar(int),
    str: _scalar(str),
    bool: _scalar(bool),
    float: _scalar(float),
    type(None): Codec(_identity, _none_decode),
    None: Codec(_identity, _none_decode),
    Decimal: Codec(str, _decimal_decode),
    datetime: Codec(datetime.isoformat, _datetime_decode),
}


def _compile(hint: Any, maxlen: int | None) -> Codec:
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return _literal(args)
    if origin in (typing.Union, types.UnionType):
        return _optional(hint, args)
    if origin is tuple:
        return _tuple(args)
    if origin in (list, set, frozenset, deque):
        return _sequence(origin, codec_for(args[0]), maxlen)
    if origin is dict:
        return _dict(args[0], args[1])
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum(hint)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return _model(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint)
    raise TypeError(f"the snapshot codec has no rule for {hint!r}: add one (and bump the version)")


def _literal(args: tuple[Any, ...]) -> Codec:
    allowed = frozenset(args)

    def decode(value: Any) -> Any:
        if value not in allowed:
            raise Shape(f"{value!r} is not one of {sorted(map(str, allowed))}")
        return value

    return Codec(_identity, decode)


def _optional(hint: Any, args: tuple[Any, ...]) -> Codec:
    others = [a for a in args if a is not type(None)]
    if len(others) != 1 or len(args) != 2:
        raise TypeError(f"the snapshot codec reads only X | None unions, not {hint!r}")
    inner = codec_for(others[0])

    def encode(value: Any) -> Any:
        return None if value is None else inner.encode(value)

    def decode(value: Any) -> Any:
        return None if value is None else inner.decode(value)

    return Codec(encode, decode)


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise Shape(f"expected a list, got {type(value).__name__}")
    return value


def _tuple(args: tuple[Any, ...]) -> Codec:
    if len(args) == 2 and args[1] is Ellipsis:
        each = codec_for(args[0])
        return Codec(
            lambda value: [each.encode(v) for v in value],
            lambda value: tuple(each.decode(v) for v in _list(value)),
        )
    parts = [codec_for(a) for a in args]

    def decode(value: Any) -> tuple[Any, ...]:
        if len(_list(value)) != len(parts):
            raise Shape(f"expected {len(parts)} items, got {len(value)}")
        return tuple(p.decode(v) for p, v in zip(parts, value, strict=True))

    return Codec(lambda value: [p.encode(v) for p, v in zip(parts, value, strict=True)], decode)


def _sequence(kind: Any, each: Codec, maxlen: int | None) -> Codec:
    encode_each, decode_each = each.encode, each.decode
    if encode_each is _identity:
        encode: Encode = list
    else:

        def encode(value: Any) -> Any:
            return [encode_each(v) for v in value]

    if kind is deque:
        return Codec(encode, lambda value: deque(map(decode_each, _list(value)), maxlen))
    return Codec(encode, lambda value: kind(map(decode_each, _list(value))))


def _dict(key_hint: Any, value_hint: Any) -> Codec:
    keys, values = codec_for(key_hint), codec_for(value_hint)
    encode_value, decode_value = values.encode, values.decode
    if key_hint is str:

        def decode_object(value: Any) -> dict[str, Any]:
            if type(value) is not dict:
                raise Shape(f"expected an object, got {type(value).__name__}")
            return {k: decode_value(v) for k, v in value.items()}

        return Codec(lambda value: {k: encode_value(v) for k, v in value.items()}, decode_object)
    encode_key, decode_key = keys.encode, keys.decode
    return Codec(
        lambda value: [[encode_key(k), encode_value(v)] for k, v in value.items()],
        lambda value: {decode_key(k): decode_value(v) for k, v in _pairs(value)},
    )


def _pairs(value: Any) -> list[Any]:
    for pair in _list(value):
        if type(pair) is not list or len(pair) != 2:
            raise Shape("expected [key, value] pairs")
    return value  # type: ignore[no-any-return]


def _enum(kind: type[Enum]) -> Codec:
    members = kind._value2member_map_

    def decode(value: Any) -> Any:
        try:
            return members[value]
        except (KeyError, TypeError):  # not a value as such (unhashable, or an alias): ask it
            return kind(value)

    return Codec(lambda value: value.value, decode)


#: Frozen models made from all-scalar JSON, by their JSON: a state holds the same few
#: resource shapes, prices and SLAs thousands of times, and validating each again is most of
#: a decode. Shared instances are safe: the model is frozen and holds no container.
_MADE: dict[tuple[type[BaseModel], tuple[tuple[str, Any], ...]], BaseModel] = {}
_MADE_MAX = 200_000


def _model(kind: type[BaseModel]) -> Codec:
    # Its JSON form validated back: what the fold holds is what a decoded event holds.
    validate = kind.model_validate
    if not kind.model_config.get("frozen"):
        return Codec(lambda value: value.model_dump(mode="json"), validate)

    def decode(value: Any) -> Any:
        if type(value) is not dict:
            return validate(value)
        key = (kind, tuple(value.items()))
        try:
            made = _MADE.get(key)
        except TypeError:  # a list or object inside: not all scalars, not shared
            return validate(value)
        if made is None:
            if len(_MADE) >= _MADE_MAX:
                _MADE.clear()
            made = _MADE[key] = validate(value)
        return made

    return Codec(lambda value: value.model_dump(mode="json"), decode)


def _dataclass(kind: type) -> Codec:
    hints = typing.get_type_hints(kind)
    fields = dataclasses.fields(kind)
    if any(not f.init for f in fields):
        raise TypeError(f"the snapshot codec builds {kind.__name__} by its __init__: every field")
    codecs = [codec_for(hints[f.name], maxlen=_maxlen(f)) for f in fields]
    return Codec(
        _compiled(_encode_source(kind, fields, codecs), kind, codecs),
        _compiled(_decode_source(kind, codecs), kind, codecs),
    )


# A dataclass's pair is generated as one function each, its fields unrolled: a generic walk
# over (name, codec) pairs was most of a large state's encode and decode. A field whose codec
# is the identity is read or passed as is, and a scalar's type check is inlined.
_SCALAR_OF = {_SIMPLE[kind].decode: kind for kind in (int, str, bool, float)}


def _encode_source(kind: type, fields: tuple[dataclasses.Field[Any], ...],
                   codecs: list[Codec]) -> str:  # fmt: skip
    parts = [
        f"value.{f.name}" if c.encode is _identity else f"e{i}(value.{f.name})"
        for i, (f, c) in enumerate(zip(fields, codecs, strict=True))
    ]
    return f"def encode(value):\n    return [{', '.join(parts)}]\n"


def _decode_source(kind: type, codecs: list[Codec]) -> str:
    count = len(codecs)
    lines = [
        "def decode(value):",
        f"    if type(value) is not list or len(value) != {count}:",
        f"        raise Shape('expected {count} fields of {kind.__name__}')",
    ]
    if count:
        lines.append(f"    {', '.join(f'v{i}' for i in range(count))}, = value")
    args = []
    for i, c in enumerate(codecs):
        scalar = _SCALAR_OF.get(c.decode)
        if scalar is not None:
            lines.append(f"    if type(v{i}) is not {scalar.__name__}:")
            lines.append(f"        raise Shape('expected {scalar.__name__}, got ' + "
                         f"type(v{i}).__name__)")  # fmt: skip
            args.append(f"v{i}")
        else:
            args.append(f"d{i}(v{i})")
    lines.append(f"    return kind({', '.join(args)})")
    return "\n".join(lines) + "\n"


def _compiled(source: str, kind: type, codecs: list[Codec]) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {"kind": kind, "Shape": Shape}
    for i, c in enumerate(codecs):
        namespace[f"e{i}"], namespace[f"d{i}"] = c.encode, c.decode
    # our own text, made from type hints: no input reaches it
    exec(compile(source, f"<snapshot codec of {kind.__qualname__}>", "exec"), namespace)
    found = namespace.get("encode") or namespace["decode"]
    assert callable(found)
    return found  # type: ignore[no-any-return]


def _maxlen(field: dataclasses.Field[Any]) -> int | None:
    """A deque's bound is its factory's, not its type's: read it off a fresh default."""
    factory = field.default_factory
    if factory is dataclasses.MISSING:
        return None
    made = factory()
    return made.maxlen if isinstance(made, deque) else None


def describe(hint: Any, seen: set[Any] | None = None) -> list[str]:
    """Every type the codec reaches from ``hint`` with its fields, one line each, sorted: the
    shape a snapshot's version stands for."""
    seen = set() if seen is None else seen
    lines: list[str] = []
    for arg in typing.get_args(hint):
        if not isinstance(arg, str):
            lines += describe(arg, seen)
    if not isinstance(hint, type) or hint in seen:
        return lines
    seen.add(hint)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = [(f.name, hints[f.name], _maxlen(f)) for f in dataclasses.fields(hint)]
        lines.append(f"{_name(hint)}({', '.join(f'{n}: {t!r} [{m}]' for n, t, m in fields)})")
        for _, field_hint, _ in fields:
            lines += describe(field_hint, seen)
    elif issubclass(hint, BaseModel):
        model_fields = [(n, f.annotation) for n, f in hint.model_fields.items()]
        lines.append(f"{_name(hint)}({', '.join(f'{n}: {t!r}' for n, t in model_fields)})")
        for _, field_hint in model_fields:
            lines += describe(field_hint, seen)
    elif issubclass(hint, Enum):
        lines.append(f"{_name(hint)}{[m.value for m in hint]}")
    return sorted(set(lines))


def _name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"
