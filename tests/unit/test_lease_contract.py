"""The relay lease contract on memory and on SQLite's file lock (PostgreSQL's: in
tests/integration/test_store_postgres.py)."""

from __future__ import annotations

import pytest

from hero.store import FileLease, MemoryLease, open_relay_lease
from hero.store.lease import check_lease_name
from tests.unit.lease_contract import LeaseContract


class TestMemoryLease(LeaseContract):
    @pytest.fixture
    def new_lease(self, request):
        name = f"relay-{abs(hash(request.node.nodeid)) % 10**9}"
        return lambda: MemoryLease(name)


class TestFileLease(LeaseContract):
    @pytest.fixture
    def holder_url(self, tmp_path):
        return f"sqlite:///{tmp_path / 'events.db'}"

    @pytest.fixture
    def new_lease(self, holder_url):
        return lambda: open_relay_lease(holder_url)

    def test_the_lease_file_sits_beside_the_database(self, tmp_path):
        lease = FileLease(tmp_path / "events.db")
        assert lease.path == tmp_path / "events.db.relay.lease"

    def test_a_holder_whose_file_was_replaced_no_longer_holds(self, tmp_path):
        with FileLease(tmp_path / "events.db") as lease:
            assert lease.try_acquire()
            lease.path.unlink()
            lease.path.touch()
            assert not lease.held()


@pytest.mark.parametrize("name", ["", "Relay", "../x", ".hidden", "a" * 65, "relay 2", "r\n"])
def test_a_bad_lease_name_is_refused_by_name(name):
    with pytest.raises(ValueError, match="lease name"):
        check_lease_name(name)


def test_an_unknown_store_url_has_no_lease():
    with pytest.raises(Exception, match="unsupported store URL"):
        open_relay_lease("mysql://x")
