"""Identifiers: plain strings with one shape, so they travel as Kafka keys and URL segments."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
    "FARM_ID_MAX",
    "ID_MAX",
    "NODE_ID_MAX",
    "OFFTAKER_ID_MAX",
    "WORKLOAD_ID_MAX",
    "AccountId",
    "CommandId",
    "ContractId",
    "EventId",
    "FarmId",
    "Identifier",
    "NegotiationId",
    "NodeId",
    "OfferId",
    "OfftakerId",
    "StreamId",
    "WorkloadId",
    "is_id",
    "is_name",
    "new_id",
]

# Pydantic's regex engine reads ``$`` as the end of the text, but Python's ``re`` lets ``$``
# match before a final newline: Python code checks with ``is_id`` (a full-string match).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
#: A name (event type, actor): printable, no whitespace, no control characters, no NUL.
NAME_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
#: Free text in a payload (a farm's name, a region): anything printable, spaces included, but
#: no control characters and no NUL, which break terminals, logs and C-string consumers.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

_ID = re.compile(ID_PATTERN)
_NAME = re.compile(NAME_PATTERN)

#: What the event store holds: every stream, event and command id is at most this long.
ID_MAX = 200

# Ids a person chooses are shorter: the market derives longer ids from them, and those must
# stay within ID_MAX. The longest is the store's record of an offtaker agent's accept once
# its hold is released, ``offtaker:O:N:accept:OFFER:release`` with the negotiation
# ``N = O.W.<number>`` and the offer ``N.F.<index>``: 3*O + 2*W + F + 2*number + index + 32
# characters, so 198 with 9-digit numbers and 4-digit indexes. Node ids appear once, in a
# farmer's hold sweep. tests/unit/test_derived_ids.py checks every derivation at these limits.
OFFTAKER_ID_MAX = 24
WORKLOAD_ID_MAX = 24
FARM_ID_MAX = 24
NODE_ID_MAX = 64


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX, pattern=ID_PATTERN, strip_whitespace=False),
]
EventId = Identifier
CommandId = Identifier
StreamId = Identifier
FarmId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=FARM_ID_MAX, pattern=ID_PATTERN, strip_whitespace=False
    ),
]
NodeId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=NODE_ID_MAX, pattern=ID_PATTERN, strip_whitespace=False
    ),
]
OfftakerId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=OFFTAKER_ID_MAX, pattern=ID_PATTERN, strip_whitespace=False
    ),
]
NegotiationId = Identifier
OfferId = Identifier
ContractId = Identifier
AccountId = Identifier
WorkloadId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=WORKLOAD_ID_MAX, pattern=ID_PATTERN, strip_whitespace=False
    ),
]


def is_id(value: object, max_length: int = 200) -> bool:
    """True when ``value`` is an id as a whole: a trailing newline or a NUL makes it not one."""
    return isinstance(value, str) and len(value) <= max_length and bool(_ID.fullmatch(value))


def is_name(value: object, max_length: int = 200) -> bool:
    """True when ``value`` is a name (see ``NAME_PATTERN``) as a whole."""
    return isinstance(value, str) and len(value) <= max_length and bool(_NAME.fullmatch(value))


def new_id(prefix: str) -> str:
    """A fresh unique id such as ``evt_0f3c...``; the prefix says what it names."""
    return f"{prefix}_{uuid.uuid4().hex}"
