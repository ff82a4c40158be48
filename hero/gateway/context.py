"""What every part of the gateway shares: who is calling, and the services it calls.

Each router module (``commands``, ``queries``, ``streams``, ``catalogue``, ``metrics``,
``dashboard``) exposes ``router(context: GatewayContext) -> APIRouter``; ``app.create_app``
builds one context and includes them all. A route learns its caller through the dependency
``hero.gateway.auth.caller`` (a :class:`Principal`, defined in :mod:`hero.access`), which
answers 401 without a valid key. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# Re-exported: the gateway's routers and their tests take the caller's types from here.
from hero.access import Principal, Role

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from hero.config import HeroSettings
    from hero.domain.clock import Clock
    from hero.store import EventStore

__all__ = ["GatewayContext", "Principal", "Role"]


@dataclass
class GatewayContext:
    settings: HeroSettings
    store: EventStore
    redis: Redis
    clock: Clock
    extras: dict[str, Any] = field(default_factory=dict)
