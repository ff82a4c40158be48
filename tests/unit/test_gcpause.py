"""One pause of the cyclic collector for the whole process (hero.model.gcpause): overlapping
pauses, in any order of ending, leave the collector as it was before the first."""

from __future__ import annotations

import gc
from contextlib import ExitStack

from hero.model.gcpause import collections_paused


def test_overlapping_pauses_that_end_out_of_order_restore_the_collector():
    assert gc.isenabled()
    with ExitStack() as first:
        first.enter_context(collections_paused())  # e.g. a snapshot encode on a refresher thread
        second = collections_paused()  # the host's catch-up starts while it runs
        second.__enter__()
        assert not gc.isenabled()
        first.close()  # the first ends before the second: still paused
        assert not gc.isenabled()
        second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
