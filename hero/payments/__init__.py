"""Payments on the event store: the ledger, the treasury's fiat intake, hourly billing.

A service over the store port. See docs/architecture.md for the layers and the flow of one command.
"""

from hero.payments.ledger import LedgerService, PostResult, read_book, read_ledger

__all__ = ["LedgerService", "PostResult", "read_book", "read_ledger"]
