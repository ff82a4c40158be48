"""The RelayLease contract, reusable by every adapter (hero/store/lease.py).

Subclass :class:`LeaseContract` in a ``Test*`` class and override ``new_lease`` (a factory of
leases of one name on the store under test). Adapters whose lease crosses processes also
override ``holder_url`` (the store URL a child process opens its lease from); the kill -9
test then spawns a child that takes the lease and kills it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from hero.store import RelayLease

__all__ = ["LeaseContract", "LeaseFactory", "LeaseHolder"]

LeaseFactory = Callable[[], RelayLease]
TAKEOVER_BOUND_S = 5.0

_HOLDER = """
import sys, time
from hero.store import open_relay_lease
lease = open_relay_lease(sys.argv[1])
if not lease.try_acquire():
    print("busy", flush=True)
    sys.exit(3)
print("held", flush=True)
time.sleep(120)  # until the test kills it; it never ends by itself before
"""


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"the holder process said nothing in {timeout_s} s")
    return proc.stdout.readline().strip()


class LeaseHolder:
    """A child process holding the lease of ``url``; killed (-9) on exit if still alive."""

    def __init__(self, url: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, url],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def __enter__(self) -> LeaseHolder:
        line = _read_line(self.proc, 30.0)
        if line != "held":
            self.kill()
            raise AssertionError(f"the child could not take a free lease: {line!r}")
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # only the pid this test started
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __exit__(self, *_: object) -> None:
        self.kill()


def _acquire_within(lease: RelayLease, timeout_s: float) -> float:
    """Seconds until ``lease`` is taken; fails after ``timeout_s``."""
    began = time.monotonic()
    while not lease.try_acquire():
        if time.monotonic() - began > timeout_s:
            raise AssertionError(f"the lease was not free {timeout_s} s after its holder died")
        time.sleep(0.05)  # polling the lease, bounded by the deadline above
    return time.monotonic() - began


class LeaseContract:
    """What every RelayLease adapter promises."""

    @pytest.fixture
    def new_lease(self) -> Iterator[LeaseFactory]:
        raise NotImplementedError("a contract subclass provides the leases under test")

    @pytest.fixture
    def holder_url(self) -> str | None:
        """The store URL a child process takes its lease from; None: one process only."""
        return None

    @pytest.fixture
    def leases(self, new_lease: LeaseFactory) -> Iterator[Callable[[], RelayLease]]:
        made: list[RelayLease] = []

        def make() -> RelayLease:
            lease = new_lease()
            made.append(lease)
            return lease

        yield make
        for lease in made:
            lease.close()

    def test_a_free_lease_is_taken_and_held(self, leases):
        lease = leases()
        assert not lease.held()
        assert lease.try_acquire()
        assert lease.held()

    def test_taking_a_lease_already_held_by_oneself_keeps_it(self, leases):
        lease = leases()
        assert lease.try_acquire()
        assert lease.try_acquire()
        assert lease.held()

    def test_a_second_holder_cannot_acquire_while_the_first_holds(self, leases):
        first, second = leases(), leases()
        assert first.try_acquire()
        assert not second.try_acquire()
        assert not second.held()
        assert first.held()

    def test_a_released_lease_goes_to_the_next_one(self, leases):
        first, second = leases(), leases()
        assert first.try_acquire()
        first.release()
        assert not first.held()
        assert second.try_acquire()
        assert not first.try_acquire()

    def test_releasing_a_lease_not_held_leaves_the_holder_alone(self, leases):
        first, second = leases(), leases()
        assert first.try_acquire()
        second.release()
        assert first.held()
        assert not second.try_acquire()

    def test_closing_as_a_context_manager_releases(self, leases):
        with leases() as first:
            assert first.try_acquire()
        assert leases().try_acquire()

    def test_a_lease_held_by_another_process_is_refused_then_freed_by_its_kill(
        self, leases, holder_url
    ):
        if holder_url is None:
            pytest.skip("this adapter's lease lives in one process")
        with LeaseHolder(holder_url) as holder:
            lease = leases()
            assert not lease.try_acquire()
            holder.kill()
            took = _acquire_within(lease, TAKEOVER_BOUND_S)
        assert lease.held()
        print(f"lease free {took:.3f} s after kill -9 of its holder")
