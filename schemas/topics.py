"""The Kafka topics of the platform (DESIGN.md, "Streams")."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Topic"]


class Topic(StrEnum):
    POLICIES = "hero.policies"
    RESERVATIONS = "hero.reservations"
    UTILIZATION = "hero.utilization"
    PAYMENTS = "hero.payments"
    COMMANDS = "hero.commands"
    DLQ = "hero.dlq"
