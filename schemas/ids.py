"""Identifiers: plain strings with one shape, so they travel as Kafka keys and URL segments."""

from __future__ import annotations

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
    "new_id",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"

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


def new_id(prefix: str) -> str:
    """A fresh unique id such as ``evt_0f3c...``; the prefix says what it names."""
    return f"{prefix}_{uuid.uuid4().hex}"
