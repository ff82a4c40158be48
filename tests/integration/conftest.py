"""Integration tests use the engine-aware fixtures of tests/conftest.py (``stack``,
``broker_factory``, ``store_factory``, ``relay_standin``): see its docstring."""

from __future__ import annotations

from tests._engines import RunningStack

__all__ = ["RunningStack"]
