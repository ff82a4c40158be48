"""Why an aggregate refuses a command."""

from __future__ import annotations

__all__ = ["Rejected"]


class Rejected(ValueError):
    """The aggregate's rules refuse the command; ``reason`` is a stable code, nothing is written."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(f"{reason}: {message}")
