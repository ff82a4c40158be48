"""What the SDK raises."""

from __future__ import annotations

from typing import Any

__all__ = ["GatewayError", "RateLimited", "ReconnectsExhausted", "SdkError", "StreamClosed"]


class SdkError(Exception):
    """Every error of the SDK."""


class GatewayError(SdkError):
    """The gateway refused a request (4xx, or a 5xx that was not retried): ``status``, the
    short ``reason`` code, its ``message`` and the whole ``detail`` (field errors on 422)."""

    def __init__(self, status: int, reason: str, message: str, detail: Any = None):
        self.status, self.reason, self.message, self.detail = status, reason, message, detail
        super().__init__(f"{status} {reason}: {message}")


class RateLimited(GatewayError):
    """429: the key (or this client, without a valid key) is over a rate of the gateway
    (``reason`` ``rate_limited``), or has the most open streams it may (``too_many_streams``).
    ``retry_after_s``: when the gateway says to try again (its ``Retry-After``), if it did."""

    def __init__(self, reason: str, message: str, retry_after_s: float | None, detail: Any = None):
        super().__init__(429, reason, message, detail)
        self.retry_after_s = retry_after_s


class StreamClosed(SdkError):
    """The gateway ended a subscription (for example a slow consumer) and reconnecting was
    not asked for; ``reason`` is the gateway's, ``position`` the last one received."""

    def __init__(self, reason: str, position: int | None):
        self.reason, self.position = reason, position
        super().__init__(f"stream closed after position {position}: {reason}")


class ReconnectsExhausted(SdkError):
    """The stream could not be reopened within the allowed attempts."""

    def __init__(self, attempts: int, last_error: str, position: int | None):
        self.attempts, self.last_error, self.position = attempts, last_error, position
        super().__init__(
            f"gave up after {attempts} reconnect attempts (last position {position}): {last_error}"
        )
