"""The usage worker's side of the telemetry spool: forget what is counted, resend what is lost.

Publishers keep each sample in the spool (``hero.store.spool``) before they send it. Every
``interval`` the usage worker looks at the spool, oldest first:

* a sample its window in Valkey holds (or whose hour is closed) is removed: it is counted;
* when the broker's telemetry marker (``hero.telemetry.epoch``) is missing, the broker may
  have lost samples it had taken (the embedded broker is memory-only; the relay's purge on a
  refill deletes ``hero.utilization`` with the marker): the marker is created first, then
  every sample not counted is sent again. A broker that restarts during that send loses the
  new marker too, so the next look sends them again;
* a sample not counted long after it was sent (``stale_after``: a publisher that gave up while
  the broker was away) is sent again as well.

A sample sent twice is counted once: the windows keep the ids of the samples they counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from hero.log.retry import is_infrastructure_error
from hero.log.telemetry import TelemetryPublisher
from hero.log.topics import TopicAdmin
from hero.readmodels.usage import UsageWindows
from hero.store.spool import SampleSpool, SpooledSample

__all__ = ["RedriveCounts", "SpoolRedriver"]

log = logging.getLogger("streams.redrive")


@dataclass
class RedriveCounts:
    counted: int = 0
    """Samples removed from the spool, counted."""
    resent: int = 0
    epochs: int = 0
    """How many times the broker was found without the telemetry marker."""


class SpoolRedriver:
    def __init__(
        self,
        spool: SampleSpool,
        windows: UsageWindows,
        admin: TopicAdmin,
        publisher: TelemetryPublisher,
        *,
        stale_after_s: float = 60.0,
        page: int = 1000,
        now: Callable[[], float] = time.time,
    ):
        self._spool, self._windows = spool, windows
        self._admin, self._publisher = admin, publisher
        self._stale_after, self._page, self._now = stale_after_s, page, now
        self.counts = RedriveCounts()
        self._resend_all = False  # set by a missing marker; cleared by a whole look's success

    async def cycle(self) -> RedriveCounts:
        """One look at the whole spool; this look's counts."""
        missing = not await self._admin.telemetry_marker_present()
        if missing:
            log.warning("the broker has no telemetry marker: sending uncounted samples again")
            await self._admin.mark_telemetry_epoch()
            self._resend_all = True
        lost = self._resend_all
        found = RedriveCounts(epochs=int(missing))
        after = 0
        while page := self._spool.pending(after, self._page):
            after = page[-1][0]
            keys = [(s.contract_id, s.hour, s.sample_id) for _, _, s in page]
            counted = await self._windows.counted(keys)
            done = [s.sample_id for (_, _, s), c in zip(page, counted, strict=True) if c]
            self._spool.remove(done)
            found.counted += len(done)
            due = self._now() - self._stale_after
            again: list[SpooledSample] = [
                s
                for (_, sent_at, s), c in zip(page, counted, strict=True)
                if not c and (lost or sent_at < due)
            ]
            if again:
                await self._publisher.send_records(again)
                self._spool.sent_again([s.sample_id for s in again], self._now())
                found.resent += len(again)
        self._resend_all = False
        if found.resent:
            log.warning("sent %d uncounted samples again", found.resent)
        self.counts.counted += found.counted
        self.counts.resent += found.resent
        self.counts.epochs += found.epochs
        return found

    async def run(self, stop: asyncio.Event, interval_s: float = 1.0) -> None:
        """``cycle`` every ``interval_s`` until ``stop``; a dependency that is down is logged
        and tried again on the next look."""
        while not stop.is_set():
            try:
                await self.cycle()
            except Exception as error:
                if not is_infrastructure_error(error):
                    log.exception("telemetry spool: redrive failed")
                else:
                    log.warning("telemetry spool: dependency unavailable (%r)", error)
                await self._admin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
