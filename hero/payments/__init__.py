"""Payments on the event store: the ledger, the treasury's fiat intake, hourly billing."""

from hero.payments.ledger import LedgerService, PostResult, read_book, read_ledger

__all__ = ["LedgerService", "PostResult", "read_book", "read_ledger"]
