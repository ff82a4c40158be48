"""Errors of the local stack launcher."""

from __future__ import annotations

__all__ = ["ComponentError", "StackError"]


class StackError(RuntimeError):
    """The stack cannot be brought up, down or used; the message says why."""


class ComponentError(StackError):
    """One component failed; names it and carries the tail of its log."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component}: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(message)
