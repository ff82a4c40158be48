"""HERO's Python SDK: subscribe to the gateway's event streams and send its commands.

async with Client("http://127.0.0.1:8400", key) as client:
    async for position, envelope, event in client.subscribe("hero.reservations"):
        ...
    async for contract in client.documents("contracts", farm_id="farm-1"):
        ...  # every page, its cursor followed
"""

from hero.sdk.client import Client, Cursor, StreamEvent
from hero.sdk.errors import (
    GatewayError,
    RateLimited,
    ReconnectsExhausted,
    SdkError,
    StreamClosed,
)

__all__ = [
    "Client",
    "Cursor",
    "GatewayError",
    "RateLimited",
    "ReconnectsExhausted",
    "SdkError",
    "StreamClosed",
    "StreamEvent",
]
