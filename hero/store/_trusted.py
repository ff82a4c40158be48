"""A fast decode of rows read back from our own store, for the folds of a whole log.

Every row was validated when it was appended, so a rebuild or a host's catch-up need not
validate it again: the JSON is parsed with orjson and each class is built by a converter
compiled once per class from its fields' types (``model_construct`` with the nested models,
Decimals, datetimes and enums converted), several times faster than pydantic's validation.
What a converter cannot build (a field type it does not know, a payload of an older
version, a command, a row that does not parse) goes the validated way, which also names
what is wrong with a poison row. ``tests/unit/test_trusted_decode.py`` proves both decodes
equal, event for event, on the golden history and on the benchmark's generated log.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel

from schemas import Envelope, Event, SchemaRegistry

__all__ = ["TrustedDecoder"]

Convert = Callable[[Any], Any]


class _Unsupported(Exception):
    """A field type the compiler does not build: its class is decoded the validated way."""


def _same(value: Any) -> Any:
    return value


def _decimal(value: Any) -> Decimal:
    if isinstance(value, float):  # never written by our serializer: let validation say so
        raise TypeError("a float where a Decimal is")
    return Decimal(value)


def _datetime(value: Any) -> datetime:
    return datetime.fromisoformat(value)


_LEAVES: dict[Any, Convert] = {
    str: _same,
    int: _same,
    bool: _same,
    Any: _same,
    Decimal: _decimal,
    datetime: _datetime,
    AwareDatetime: _datetime,
}


def _optional(inner: Convert) -> Convert:
    if inner is _same:
        return _same  # None is itself

    def convert(value: Any) -> Any:
        return None if value is None else inner(value)

    _OPTIONAL[convert] = inner
    return convert


#: Each optional converter's inner one, so the generated builder can inline both.
_OPTIONAL: dict[Convert, Convert] = {}


def _sequence(kind: type, inner: Convert) -> Convert:
    if inner is _same:
        return lambda value: kind(value)
    return lambda value: kind(inner(v) for v in value)


def _mapping(inner: Convert) -> Convert:
    if inner is _same:
        return dict
    return lambda value: {k: inner(v) for k, v in value.items()}


def _converter(annotation: Any, models: dict[type, Convert]) -> Convert:
    if annotation in _LEAVES:
        return _LEAVES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _converter(args[0], models)
    if origin is typing.Literal:
        return _same
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise _Unsupported(f"a union of {args}")
        inner = _converter(rest[0], models)
        return _optional(inner) if len(rest) < len(args) else inner
    if origin in (list, tuple, frozenset, set):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise _Unsupported(f"a fixed tuple {annotation}")
        return _sequence(origin, _converter(args[0], models))
    if origin is dict and args and args[0] is str:
        return _mapping(_converter(args[1], models))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        # the member by its value, without Enum.__call__'s machinery (KeyError: validated way)
        return annotation._value2member_map_.__getitem__
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation, models)
    raise _Unsupported(f"a field of type {annotation!r}")


def _model(cls: type[BaseModel], models: dict[type, Convert]) -> Convert:
    """``cls`` built from its JSON form, its fields converted, nothing validated or checked
    (``model_post_init`` included: in the schemas it only checks). The builder is generated
    source, one line per field, and sets what ``model_construct`` sets, directly: the
    generic loop and ``model_construct`` cost about what pydantic's validation does. A field
    missing from the JSON (written before it had a default) raises KeyError: the row then
    goes the validated way."""
    if cls in models:
        return models[cls]
    if (
        cls.model_config.get("extra") == "allow"
        or cls.__private_attributes__
        or any(f.alias not in (None, name) for name, f in cls.model_fields.items())
    ):
        raise _Unsupported(f"{cls.__name__} has aliases, extra fields or private attributes")
    scope: dict[str, Any] = {}
    models[cls] = lambda value: scope["build"](value)  # a model holding itself, while compiled
    try:
        converters = {n: _converter(f.annotation, models) for n, f in cls.model_fields.items()}
    except _Unsupported:
        del models[cls]
        raise
    lines = [
        f"{name!r}: {_inline(convert, f'v[{name!r}]', f'{i}', scope)},"
        for i, (name, convert) in enumerate(converters.items())
    ]
    head = f"def build(v):\n    o = new(cls)\n    setattr_(o, '__dict__', {{{' '.join(lines)}}})\n"
    models[cls] = _compiled(cls, head, set(converters), scope)
    return models[cls]


def _compiled(cls: type[BaseModel], head: str, fields: set[str], scope: dict[str, Any]) -> Convert:
    """The builder: ``head`` sets the ``__dict__``, the rest what ``model_construct`` sets.
    Every instance shares one fields-set (every field, always): pydantic only ever adds a
    name already in it, and copies it for a copy."""
    scope.update(new=cls.__new__, cls=cls, setattr_=object.__setattr__, fields=fields)
    source = (
        f"{head}"
        "    setattr_(o, '__pydantic_fields_set__', fields)\n"
        "    setattr_(o, '__pydantic_extra__', None)\n"
        "    setattr_(o, '__pydantic_private__', None)\n"
        "    return o\n"
    )
    exec(compile(source, f"<trusted {cls.__qualname__}>", "exec"), scope)
    return typing.cast(Convert, scope["build"])


def _owned(cls: type[BaseModel], models: dict[type, Convert]) -> Convert:
    """As :func:`_model`, for a top-level model whose JSON dict the caller owns (fresh from
    orjson, held by nobody else): its fields are converted in place and the dict becomes the
    model's, no copy (a nested dict field is the caller's too, kept as it is). A dict whose
    keys are not exactly the fields raises KeyError: the row goes the validated way."""
    converters = {n: _converter(f.annotation, models) for n, f in cls.model_fields.items()}
    scope: dict[str, Any] = {"names": frozenset(converters)}
    lines = [
        f"    v[{name!r}] = {_inline(convert, f'v[{name!r}]', f'{i}', scope)}\n"
        for i, (name, convert) in enumerate(converters.items())
        if convert is not _same and convert is not dict
    ]
    head = (
        "def build(v):\n"
        "    if v.keys() != names:\n"
        "        raise KeyError('not the fields')\n"
        f"{''.join(lines)}"
        "    o = new(cls)\n"
        "    setattr_(o, '__dict__', v)\n"
    )
    return _compiled(cls, head, set(converters), scope)


def _inline(convert: Convert, value: str, tag: str, scope: dict[str, Any]) -> str:
    """The expression converting ``value`` in the generated builder: the common leaves
    (strings, datetimes, enums, optionals of them) inline, a function call per field less
    on every row; anything else a call of its converter."""
    if convert is _same:
        return value
    if convert is _datetime:
        scope["fromiso"] = datetime.fromisoformat
        return f"fromiso({value})"
    members = getattr(convert, "__self__", None)
    if isinstance(members, dict) and getattr(convert, "__name__", "") == "__getitem__":
        scope[f"e{tag}"] = members  # an enum's members by value: a KeyError goes validated
        return f"e{tag}[{value}]"
    inner = _OPTIONAL.get(convert)
    if inner is not None:
        held = f"x{tag}"
        converted = _inline(inner, held, f"{tag}i", scope)
        return f"(None if ({held} := {value}) is None else {converted})"
    scope[f"c{tag}"] = convert
    return f"c{tag}({value})"


class TrustedDecoder:
    """Rows of our own store to (envelope, event), each class's converter compiled once;
    ``None`` where the validated decode must be used instead."""

    def __init__(self, registry: SchemaRegistry):
        self._registry = registry
        self._models: dict[type, Convert] = {}
        self._events: dict[tuple[str, int], Convert | None] = {}
        self._envelope = _owned(Envelope, self._models)

    def decode(self, envelope_json: str) -> tuple[Envelope, Event] | None:
        try:
            data = orjson.loads(envelope_json)
            key = (data["type"], data["schema_version"])
            build = self._events[key] if key in self._events else self._event(*key)
            if build is None:
                return None
            envelope: Envelope = self._envelope(data)
            return envelope, build(envelope.payload)
        except Exception:  # anything odd: the validated way says what it is
            return None

    def _event(self, type_name: str, version: int) -> Convert | None:
        key = (type_name, version)
        if key not in self._events:
            self._events[key] = self._compile(type_name, version)
        return self._events[key]

    def _compile(self, type_name: str, version: int) -> Convert | None:
        entry = self._registry.entry(type_name)
        if entry.kind != "event" or entry.version != version or not issubclass(entry.model, Event):
            return None  # a command (poison), or a payload to upcast
        try:
            return _model(entry.model, self._models)
        except _Unsupported:
            return None
