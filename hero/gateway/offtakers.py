"""The offtakers the log names, followed from the event store, and the gateway's secret.

Redaction (:mod:`hero.gateway.redaction`) masks every offtaker id in what a developer key
receives; this module tells it which ids those are. :class:`OfftakerDirectory` reads the log
once from the start (when the first developer view is rendered) and then each new row before
any view of it is rendered, so every id derived from an offtaker is masked even in an event
that names no ``offtaker_id`` (an ``OfferMade``'s ``negotiation_id``, a ``HoldReleased``'s
``hold_id``, a bill's ``causation_id``): the offtaker was named by an earlier row (its
mandate, RFQ, contract or account). An offtaker is learned from a row's ``offtaker_id``,
``offtaker_ids``, ``allow_offtakers`` and ``deny_offtakers`` (at any depth), from the accounts
it names (``offtaker.OWNER.CUR``), and from an actor ``offtaker:ID``.

Its cost: one pass over the log per gateway process, then only new rows (and of those, only
the ones whose text mentions ``offtaker`` are parsed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from hero.config import HeroSettings
from hero.gateway.context import GatewayContext
from hero.gateway.redaction import Pseudonyms
from hero.secretfile import secret_in
from hero.store import EventStore

__all__ = ["SECRET_FILE", "OfftakerDirectory", "directory_for", "gateway_secret", "named_in"]

SECRET_FILE = "gateway.secret"
_ACCOUNT = re.compile(r"^offtaker\.(.+)\.[A-Za-z]{3,5}$")
_LISTS = ("offtaker_ids", "allow_offtakers", "deny_offtakers")
log = logging.getLogger(__name__)


def gateway_secret(settings: HeroSettings) -> bytes:
    """``HERO_API_SECRET`` if set, else the data dir's ``gateway.secret`` (made once, readable
    by its owner only): every gateway process of one deployment must share it, or the same
    offtaker gets different pseudonyms from different gateways."""
    if settings.api_secret is not None:
        return settings.api_secret.get_secret_value().encode()
    return secret_in(settings.data_dir / SECRET_FILE).encode()


def named_in(envelope: Mapping[str, Any]) -> set[str]:
    """The offtaker ids an event envelope names (see the module's docstring)."""
    found: set[str] = set()
    actor = envelope.get("actor")
    if isinstance(actor, str) and actor.startswith("offtaker:"):
        found.add(actor.split(":", 2)[1])
    _walk(envelope.get("payload"), found)
    found.discard("")
    return found


def _walk(value: Any, found: set[str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "offtaker_id" and isinstance(item, str):
                found.add(item)
            elif key in _LISTS and isinstance(item, list):
                found.update(o for o in item if isinstance(o, str))
            else:
                _walk(item, found)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found)
    elif isinstance(value, str):
        account = _ACCOUNT.match(value)
        if account is not None:
            found.add(account.group(1))


class OfftakerDirectory:
    """Follows ``store`` and teaches ``pseudonyms`` every offtaker the log names.

    :meth:`ensure` (on the event loop) returns once every row up to a position has been
    read; the reading runs in a thread, one catch-up at a time."""

    def __init__(self, store: EventStore, pseudonyms: Pseudonyms, *, batch: int = 2000):
        self.store = store
        self.pseudonyms = pseudonyms
        self.batch = batch
        self.position = 0
        self.skipped = 0
        """Rows whose text could not be read as JSON (each logged, none of them fatal)."""
        self._lock: asyncio.Lock | None = None
        self._read_lock = threading.Lock()

    def catch_up(self) -> int:
        """Read the rows after :attr:`position` up to the store's head; the new position."""
        with self._read_lock:
            while rows := self.store.read_all(self.position + 1, self.batch):
                found, skipped = _offtakers_of((row.position, row.envelope_json) for row in rows)
                self.pseudonyms.learn(found)
                self.skipped += skipped
                self.position = rows[-1].position
            return self.position

    async def ensure(self, position: int | None = None) -> Pseudonyms:
        """The pseudonyms, once every row up to ``position`` (None: the store's head now) has
        been read."""
        if position is not None and self.position >= position:
            return self.pseudonyms
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if position is None or self.position < position:
                await asyncio.to_thread(self.catch_up)
        return self.pseudonyms


def _offtakers_of(rows: Iterable[tuple[int, str]]) -> tuple[set[str], int]:
    """The offtakers the rows (position, envelope text) name, and how many were unreadable."""
    found: set[str] = set()
    skipped = 0
    for position, text in rows:
        # Every way a row names an offtaker spells "offtaker": most rows are skipped unparsed.
        if "offtaker" not in text:
            continue
        try:
            envelope = json.loads(text)
        except ValueError as error:
            # Skipped, not fatal: the streams report such a row; an offtaker it names is
            # learned from the other rows that name it.
            log.warning("offtaker directory: row %d is not JSON (%s); skipped", position, error)
            skipped += 1
            continue
        if isinstance(envelope, Mapping):
            found |= named_in(envelope)
    return found, skipped


def directory_for(context: GatewayContext) -> OfftakerDirectory:
    """The process's one directory (``context.extras["offtakers"]``), made on first use."""
    directory = context.extras.get("offtakers")
    if not isinstance(directory, OfftakerDirectory):
        pseudonyms = Pseudonyms(gateway_secret(context.settings))
        directory = context.extras["offtakers"] = OfftakerDirectory(context.store, pseudonyms)
    return directory
