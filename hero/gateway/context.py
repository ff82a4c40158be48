"""What every part of the gateway shares: who is calling, and the services it calls.

Each router module (``commands``, ``queries``, ``streams``, ``catalogue``, ``metrics``,
``dashboard``) exposes ``router(context: GatewayContext) -> APIRouter``; ``app.create_app``
builds one context and includes them all. A route learns its caller through the dependency
``hero.gateway.auth.caller`` (a :class:`Principal`), which answers 401 without a valid key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from hero.config import HeroSettings
    from hero.domain.clock import Clock
    from hero.store import EventStore

__all__ = ["GatewayContext", "Principal", "Role"]


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


@dataclass
class GatewayContext:
    settings: HeroSettings
    store: EventStore
    redis: Redis
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)
