"""HERO's Python SDK: subscribe to the gateway's event streams and send its commands.

async with Client("http://127.0.0.1:8400", key) as client:
    async for position, envelope, event in client.subscribe("hero.reservations"):
        ...
"""

from hero.sdk.client import Client, Cursor, StreamEvent
from hero.sdk.errors import GatewayError, ReconnectsExhausted, SdkError, StreamClosed

__all__ = [
    "Client",
    "Cursor",
    "GatewayError",
    "ReconnectsExhausted",
    "SdkError",
    "StreamClosed",
    "StreamEvent",
]
