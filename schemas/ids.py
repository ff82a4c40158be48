"""Identifiers: plain strings with one shape, so they travel as Kafka keys and URL segments."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import StringConstraints

__all__ = [
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

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=ID_PATTERN, strip_whitespace=False)
]
EventId = Identifier
CommandId = Identifier
StreamId = Identifier
FarmId = Identifier
NodeId = Identifier
OfftakerId = Identifier
NegotiationId = Identifier
OfferId = Identifier
ContractId = Identifier
AccountId = Identifier
WorkloadId = Identifier


def new_id(prefix: str) -> str:
    """A fresh unique id such as ``evt_0f3c...``; the prefix says what it names."""
    return f"{prefix}_{uuid.uuid4().hex}"
