"""Who is calling: the roles of an API key and the principal that holds one.

Shared by the gateway (which authenticates a key and scopes every answer to its principal) and
the read models (which keep the keys in Valkey), so that neither imports the other: the read
models sit below the gateway in the layers. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Principal", "Role"]


class Role(StrEnum):
    FARMER = "farmer"
    OFFTAKER = "offtaker"
    DEVELOPER = "developer"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An API key's holder. ``tenants``: the farm ids of a farmer key, the offtaker id of an
    offtaker key; empty for developer and admin keys."""

    key_id: str
    role: Role
    tenants: frozenset[str] = frozenset()

    def owns_farm(self, farm_id: str) -> bool:
        return self.role == Role.ADMIN or (self.role == Role.FARMER and farm_id in self.tenants)

    def owns_offtaker(self, offtaker_id: str) -> bool:
        return self.role == Role.ADMIN or (
            self.role == Role.OFFTAKER and offtaker_id in self.tenants
        )
