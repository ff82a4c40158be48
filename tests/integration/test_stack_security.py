"""Internal services are closed (issue 13, item 7), on stacks the launcher starts.

What was seen: Valkey answered anyone without a password; the data dir, the store, Valkey's
append-only file and the logs were readable by other users; with the gateway listening on
every interface the internal services did too; ``/metrics`` answered without a key. And
(item 4) the CLI and the gateway disagreed on a balance once a one-sided transfer leg was in
the store.

The session stack is the default configuration. A second stack, with its gateway on 0.0.0.0
(``HERO_GATEWAY_HOST``, and ``HERO_HOST`` as well), borrows the session's Ray and runs a relay
stand-in (its own broker must not feed the session's topics); its data dir is left open
beforehand, as an older HERO or a user's umask would have left it, for ``hero up`` to close.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
from redis.asyncio import Redis

from hero.config import HeroSettings, embedded_postgres_url_file
from hero.domain.ledger import Transfer, account_stream
from hero.gateway.context import Role
from hero.gateway.queries import POSITION_HEADER
from hero.payments.ledger import LedgerService
from hero.readmodels.keys import ApiKeys
from hero.store import ANY_VERSION, NewEvent, open_store
from infra import LocalStack
from schemas import Money, TransferKind, TransferPosted
from tests._wait import wait_until
from tests.e2e._cli import hero
from tests.integration.test_stack import is_loopback, listening_addresses, processes_in_sessions

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def admin_key(redis_url: str) -> str:
    async def make() -> str:
        client = Redis.from_url(redis_url)
        try:
            return (await ApiKeys(client).create(Role.ADMIN))[0]
        finally:
            await client.aclose()

    return asyncio.run(make())


# -- Valkey ------------------------------------------------------------------------------------


def test_valkey_refuses_a_client_without_its_password(stack: RunningStack) -> None:
    data_dir = stack.settings.data_dir
    password = (data_dir / "valkey.secret").read_text().strip()
    assert len(password) >= 32
    statuses = {status.name: status for status in stack.launcher.status()}
    address = statuses["valkey"].address
    assert address is not None
    assert stack.endpoints.redis_url == f"redis://:{password}@{address}/0"
    host, port = address.split(":")

    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH"), "Valkey answered without a password"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=int(port), socket_timeout=5).get("anything")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=int(port), password="guess", socket_timeout=5).ping()
    known = redis.Redis.from_url(stack.endpoints.redis_url)
    try:
        assert known.ping()
    finally:
        known.close()
    # The stack works with it: every component came up and answers.
    assert all(status.state == "up" for status in statuses.values()), statuses
    # Not on Valkey's command line, which every user may read in /proc.
    pid = statuses["valkey"].pid
    assert password not in Path(f"/proc/{pid}/cmdline").read_text()
    # Nor in what `hero up --json` and `hero config --json` print.
    report = hero("up", "--json", data_dir=data_dir)
    assert report.returncode == 0, report.stderr
    assert password not in report.stdout
    assert ":***@" in json.loads(report.stdout)["endpoints"]["redis_url"]
    config = hero("config", "--json", data_dir=data_dir,
                  env={"HERO_REDIS_URL": stack.endpoints.redis_url})  # fmt: skip
    assert password not in config.stdout


def test_metrics_need_an_admin_key(stack: RunningStack) -> None:
    url = stack.endpoints.gateway_url
    assert url is not None
    with httpx.Client(base_url=url, timeout=30) as client:
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.json()["detail"]["error"] == "missing_key"
        assert "hero_" not in anonymous.text
        key = admin_key(stack.endpoints.redis_url)
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert scraped.status_code == 200
    assert "hero_store_position" in scraped.text


def test_the_session_data_dir_is_private(stack: RunningStack) -> None:
    assert_private(stack.settings.data_dir)


def assert_private(data_dir: Path) -> None:
    for path in (data_dir / "valkey.secret", data_dir / "treasury.secret"):
        assert mode(path) == 0o600, path
    if embedded_postgres_url_file(data_dir).exists():
        _assert_postgres_private(data_dir)
    else:
        _assert_sqlite_private(data_dir)
    valkey = data_dir / "valkey"
    aof = [path for path in valkey.rglob("*") if "appendonly" in path.name]
    assert aof, "no append-only file under valkey/"
    for directory in ("logs", "run", "valkey"):
        assert mode(data_dir / directory) == 0o700, directory
    logs = list((data_dir / "logs").glob("*.log"))
    assert {"valkey.log", "gateway.log", "treasury.log"} <= {log.name for log in logs}
    for path in [*logs, *valkey.rglob("*")]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path


def _assert_sqlite_private(data_dir: Path) -> None:
    assert mode(data_dir) == 0o700
    store = data_dir / "events.db"
    assert store.exists()
    assert mode(store) == 0o600, store
    for suffix in ("-wal", "-shm", ".lock"):
        companion = store.with_name(store.name + suffix)
        if companion.exists():
            assert mode(companion) == 0o600, companion


def _assert_postgres_private(data_dir: Path) -> None:
    """The embedded PostgreSQL's cluster is its own; as root it runs as a service user whose
    group may only pass through the data dir (search bit) to reach it."""
    home, pgdata = data_dir / "postgres", data_dir / "postgres" / "data"
    shared = data_dir.stat().st_gid != os.getgid()
    assert mode(data_dir) == (0o710 if shared else 0o700)
    assert (pgdata / "PG_VERSION").exists()
    assert mode(home) == 0o700
    assert mode(pgdata) == 0o700
    assert mode(embedded_postgres_url_file(data_dir)) == 0o600
    assert mode(data_dir / "postgres.secret") == 0o600
    for leftover in data_dir.glob("events.db*"):  # a SQLite store of an earlier run
        assert mode(leftover) == 0o600, leftover


# -- a stack with its gateway on every interface ------------------------------------------------


@dataclass(frozen=True)
class OpenStack:
    launcher: LocalStack
    data_dir: Path
    gateway_url: str
    redis_url: str
    store_url: str


@pytest.fixture(scope="module")
def open_stack(
    tmp_path_factory: pytest.TempPathFactory, relay_standin: list[str], stack: RunningStack
) -> Iterator[OpenStack]:
    data_dir = tmp_path_factory.mktemp("open") / "data"
    leave_open(data_dir)
    # HERO_HOST too: before, it was the one setting that moved the gateway, and it moved every
    # internal server with it. Now it only sets the gateway's fallback.
    settings = HeroSettings(
        data_dir=data_dir,
        host="0.0.0.0",
        gateway_host="0.0.0.0",
        ray_address=stack.endpoints.ray_address,
    )
    launcher = LocalStack(settings, relay_command=relay_standin)
    launcher.up()
    try:
        endpoints = launcher.endpoints()
        assert endpoints.gateway_url is not None
        yield OpenStack(
            launcher, data_dir, endpoints.gateway_url, endpoints.redis_url, endpoints.store_url
        )
    finally:
        launcher.down()


def leave_open(data_dir: Path) -> None:
    """A data dir as an older HERO (or a umask of 022) left it: readable by everyone."""
    (data_dir / "logs").mkdir(parents=True)
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "logs", 0o755)
    old_log = data_dir / "logs" / "gateway.log"
    old_log.write_text("an old run\n")
    os.chmod(old_log, 0o644)
    sqlite3.connect(data_dir / "events.db").close()
    os.chmod(data_dir / "events.db", 0o644)


def test_internal_services_listen_on_loopback_when_the_gateway_does_not(
    open_stack: OpenStack,
) -> None:
    statuses = {status.name: status for status in open_stack.launcher.status()}
    assert statuses["ray"].state == "external"
    by_pid = {status.pid: name for name, status in statuses.items() if status.pid is not None}
    expected = {"broker", "valkey", "relay", "treasury", "usage", "commands", "gateway", "agents"}
    if open_stack.launcher.settings.embedded_postgres:  # the production engines
        expected.add("postgres")
    assert set(by_pid.values()) == expected
    listeners = listening_addresses(processes_in_sessions(list(by_pid)))
    gateway_pid = statuses["gateway"].pid
    gateway = [entry for entry in listeners if entry[0] == gateway_pid]
    assert [address for _, address, _ in gateway] == ["0.0.0.0"], gateway
    internal = [entry for entry in listeners if entry[0] != gateway_pid]
    names = {by_pid.get(pid) for pid, _, _ in internal}
    assert {"broker", "valkey", "treasury"} <= names, internal
    exposed = [entry for entry in internal if not is_loopback(entry[1])]
    assert not exposed, f"internal services listening beyond loopback: {exposed}"
    # The gateway answers on the loopback too, which is where the launcher sends clients.
    assert open_stack.gateway_url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{open_stack.gateway_url}/health", timeout=30).status_code == 200


def test_hero_up_closes_a_data_dir_left_open(open_stack: OpenStack) -> None:
    assert_private(open_stack.data_dir)
    assert (open_stack.data_dir / "logs" / "gateway.log").read_text().startswith("an old run")


def test_the_cli_and_the_gateway_agree_on_a_balance_with_a_forged_leg(
    open_stack: OpenStack,
) -> None:
    account = "offtaker.forged-acme.TFT"
    store = open_store(open_stack.store_url)
    try:
        ledger = LedgerService(store)
        paid = Transfer("real-1", "world.outside.TFT", account, Money.of("25", "TFT"),
                        TransferKind.PAYMENT, "p-1")  # fmt: skip
        ledger.post([paid], "real-1")
        forged = TransferPosted(
            transfer_id="forged-1",
            debit_account="world.outside.TFT",
            credit_account=account,
            amount=Money.of("1000000", "TFT"),
            kind=TransferKind.PAYMENT,
            reference="forged-1",
        )  # one leg, straight into the store: what `hero events append` used to write
        leg = NewEvent.of(forged, actor="cli", occurred_at=datetime.now(UTC))
        store.append(account_stream(account), ANY_VERSION, [leg], "forge-1")
        target = store.current_position()
    finally:
        store.close()

    key = admin_key(open_stack.redis_url)
    with httpx.Client(
        base_url=open_stack.gateway_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        def fetched() -> httpx.Response:
            return client.get(f"/v1/accounts/{account}")

        def caught_up() -> bool:
            answer = fetched()
            return answer.status_code == 200 and int(answer.headers[POSITION_HEADER]) >= target

        wait_until(caught_up, 30, f"the accounts read model at position {target}")
        document = fetched().json()

    shown = hero("accounts", "show", account, "--json", data_dir=open_stack.data_dir)
    assert shown.returncode == 0, shown.stderr
    cli = json.loads(shown.stdout)
    assert Decimal(cli["balance"]["amount"]) == Decimal(document["balance"]) == Decimal(25)
    assert [u["transfer_id"] for u in cli["unbalanced"]] == ["forged-1"]
    assert [u["transfer_id"] for u in document["unbalanced"]] == ["forged-1"]
    listing = hero("accounts", "list", "--json", data_dir=open_stack.data_dir)
    assert listing.returncode == 1
    assert json.loads(listing.stdout)["balanced"] is False
