"""The embedded stack launcher: up, status, down, externals, and a broker that restarts empty."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from hero.config import HeroSettings
from hero.log.topics import PLATFORM_TOPICS, TopicAdmin
from infra import BrokerProcess, LocalStack, StackError

if TYPE_CHECKING:
    from tests._engines import RunningStack

from tests._wait import wait_until

pytestmark = pytest.mark.integration


# -- helpers -----------------------------------------------------------------------------------


def list_topics(bootstrap: str) -> set[str]:
    return asyncio.run(TopicAdmin(bootstrap).list_topics())


def live_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def session_and_group(pid: int) -> tuple[int, int] | None:
    try:
        return os.getsid(pid), os.getpgid(pid)
    except ProcessLookupError:
        return None


def processes_in_sessions(sessions: Iterable[int]) -> list[int]:
    """Live processes whose session or process group is one of ``sessions``."""
    wanted = set(sessions)
    found = []
    for pid in live_pids():
        ids = session_and_group(pid)
        if ids is not None and (ids[0] in wanted or ids[1] in wanted):
            found.append(pid)
    return found


def listening_addresses(pids: Iterable[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state held by ``pids``."""
    result = []
    for pid in pids:
        inodes = _socket_inodes(pid)
        if not inodes:
            continue
        for table in ("tcp", "tcp6"):
            for address, port, inode in _listeners(Path(f"/proc/{pid}/net/{table}")):
                if inode in inodes:
                    result.append((pid, address, port))
    return result


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _listeners(table: Path) -> list[tuple[str, int, str]]:
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return []
    rows = []
    for line in lines:
        fields = line.split()
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        hex_address, hex_port = fields[1].split(":")
        raw = bytes.fromhex(hex_address)
        # The kernel prints each 32-bit word in host (little-endian) order.
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        rows.append((str(ipaddress.ip_address(words)), int(hex_port, 16), fields[9]))
    return rows


def agents_health(data_dir: Path) -> dict[str, object]:
    report = json.loads((data_dir / "run" / "agents.health").read_text())
    assert isinstance(report, dict)
    return report


def host_pids(data_dir: Path) -> list[int]:
    """The Ray worker processes of the stack's agent hosts (the actors), from its report."""
    pids = agents_health(data_dir)["host_pids"]
    assert isinstance(pids, list)
    return [int(pid) for pid in pids]


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


# -- the session stack ------------------------------------------------------------------------


def test_up_starts_every_component(stack: RunningStack) -> None:
    report = stack.report
    # Recorded, not asserted: the figure goes in the README (target: under 15 s).
    print(f"\nhero up took {report.seconds:.2f} s")
    assert not report.already_running
    statuses = {status.name: status for status in stack.launcher.status()}
    expected = {
        "broker", "valkey", "ray", "relay", "treasury", "usage", "commands", "gateway", "agents",
    }  # fmt: skip
    if stack.settings.store == "postgres":  # the embedded PostgreSQL: the production engines
        expected.add("postgres")
    assert set(statuses) == expected
    for status in statuses.values():
        assert status.state == "up", status
        assert status.pid is not None, status
        assert status.pid in live_pids(), status
    for name in ("broker", "valkey", "ray", "treasury", "gateway"):
        assert statuses[name].address, statuses[name]
    assert statuses["broker"].address == stack.endpoints.kafka_bootstrap
    password = (stack.settings.data_dir / "valkey.secret").read_text().strip()
    assert stack.endpoints.redis_url == f"redis://:{password}@{statuses['valkey'].address}/0"
    assert statuses["ray"].address == stack.endpoints.ray_address
    assert "caught up" in (statuses["agents"].detail or ""), statuses["agents"]
    assert stack.endpoints.treasury_url == f"http://{statuses['treasury'].address}"
    assert (statuses["treasury"].detail or "").startswith(
        f"webhook {stack.endpoints.treasury_url}/webhooks/payments"
    ), statuses["treasury"]
    assert re.match(r"\d+ samples, \d+ facts", statuses["usage"].detail or ""), statuses["usage"]
    assert re.match(r"\d+ applied, \d+ rejected", statuses["commands"].detail or ""), statuses[
        "commands"
    ]
    assert stack.endpoints.gateway_url == f"http://{statuses['gateway'].address}"
    assert (statuses["gateway"].detail or "").startswith(stack.endpoints.gateway_url)


def test_the_faust_workers_listen_on_no_port(stack: RunningStack) -> None:
    """Faust binds its web port unless its worker is started without web (DESIGN.md): the
    commands worker is; the usage worker (the plain consumer loop unless HERO_USAGE_RUNNER
    is faust) has no port either. Neither holds a listening socket."""
    statuses = {status.name: status for status in stack.launcher.status()}
    pids = [statuses[name].pid for name in ("usage", "commands")]
    assert all(pid is not None for pid in pids), statuses
    assert listening_addresses(pid for pid in pids if pid is not None) == []


def test_agents_run_their_hosts_on_the_stacks_ray(stack: RunningStack) -> None:
    data_dir = stack.settings.data_dir
    statuses = {status.name: status for status in stack.launcher.status()}
    report = agents_health(data_dir)
    assert report["pid"] == statuses["agents"].pid
    assert report["shards"] == stack.settings.agent_shards
    assert report["caught_up"] is True
    hosts = host_pids(data_dir)
    assert len(hosts) == stack.settings.agent_shards
    # The hosts are Ray workers: in the Ray head's session, which `hero down` stops.
    ray_pid = statuses["ray"].pid
    assert ray_pid is not None
    assert set(hosts) <= set(processes_in_sessions([ray_pid]))
    # The report is refreshed (every ~2 s).
    first = report["updated_at"]
    wait_until(lambda: agents_health(data_dir)["updated_at"] != first, 10, "a fresh agents report")


def test_second_up_reports_already_running(stack: RunningStack) -> None:
    before = {status.name: status.pid for status in stack.launcher.status()}
    again = stack.launcher.up()
    assert again.already_running
    assert {status.name: status.pid for status in again.components} == before
    print(f"\nsecond hero up (already running) took {again.seconds:.3f} s")


def test_endpoints_answer(stack: RunningStack, tmp_path: Path) -> None:
    assert set(PLATFORM_TOPICS) <= list_topics(stack.endpoints.kafka_bootstrap)
    client = redis.Redis.from_url(stack.endpoints.redis_url)
    try:
        assert client.ping()
    finally:
        client.close()
    # A Ray client in a fresh process, with a HOME of its own to see that nothing goes to ~.
    env = {**os.environ, **stack.endpoints.ray_env, "HOME": str(tmp_path)}
    code = (
        "import ray\n"
        f"ray.init(address={stack.endpoints.ray_address!r}, logging_level='ERROR')\n"
        "print(ray.get(ray.remote(lambda: 41 + 1).remote()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "42"
    assert not (tmp_path / ".ray").exists()


def test_everything_listens_on_loopback_only(stack: RunningStack) -> None:
    sessions = [status.pid for status in stack.launcher.status() if status.pid is not None]
    listeners = listening_addresses(processes_in_sessions(sessions))
    assert listeners, "the stack listens nowhere?"
    exposed = [entry for entry in listeners if not is_loopback(entry[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_status_and_endpoints_without_a_stack(tmp_path: Path) -> None:
    launcher = LocalStack(HeroSettings(data_dir=tmp_path))
    assert all(status.state == "down" for status in launcher.status())
    with pytest.raises(StackError, match="no stack running under"):
        launcher.endpoints()
    assert all(status.state == "down" for status in launcher.down())


# -- stacks of their own ----------------------------------------------------------------------


def test_down_leaves_no_process_behind(tmp_path: Path, relay_standin: list[str]) -> None:
    launcher = LocalStack(HeroSettings(data_dir=tmp_path / "data"), relay_command=relay_standin)
    report = launcher.up()
    print(
        f"\nhero up (second stack, side by side with the session one) took {report.seconds:.2f} s"
    )
    # On the production engines (HERO_STORE=postgres) the embedded PostgreSQL is one more.
    names = [
        "broker", "valkey", "ray", "relay", "treasury", "usage", "commands", "gateway", "agents",
    ]  # fmt: skip
    if launcher.settings.embedded_postgres:
        names.append("postgres")
    try:  # a failed check still stops the stack (it would outlive the test otherwise)
        leaders = [status.pid for status in report.components if status.pid is not None]
        assert len(leaders) == len(names)
        members = processes_in_sessions(leaders)
        # Ray's head runs several processes in its session (gcs_server, raylet, agents...).
        assert len(members) > len(leaders)
        # The agent hosts (Ray actor workers) are among them.
        hosts = host_pids(tmp_path / "data")
        assert len(hosts) == 2
        assert set(hosts) <= set(members)
    finally:
        stopped = launcher.down()

    assert [status.name for status in stopped] == names
    assert [status.state for status in stopped] == ["down"] * len(names)
    assert all(status.detail == "stopped" for status in stopped), stopped
    alive = set(live_pids())
    assert not alive & set(members), "processes of the stack survived hero down"
    assert not alive & set(hosts), "agent hosts survived hero down"
    assert not (tmp_path / "data" / "run" / "agents.health").exists()
    assert not (tmp_path / "data" / "run" / "treasury.health").exists()
    assert not (tmp_path / "data" / "run" / "usage.health").exists()
    assert not (tmp_path / "data" / "run" / "commands.health").exists()
    assert not (tmp_path / "data" / "run" / "gateway.health").exists()
    assert not processes_in_sessions(leaders)
    assert not (tmp_path / "data" / "run" / "stack.json").exists()
    again = launcher.down()
    assert all("no stack running" in (status.detail or "") for status in again)


def test_external_broker_is_reported_and_left_alone(
    tmp_path: Path,
    relay_standin: list[str],
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory()
    settings = HeroSettings(data_dir=tmp_path / "data", kafka_bootstrap=broker.address)
    launcher = LocalStack(settings, relay_command=relay_standin)
    report = launcher.up()
    try:
        statuses = {status.name: status for status in report.components}
        assert statuses["broker"].state == "external"
        assert statuses["broker"].pid is None
        assert statuses["broker"].address == broker.address
        assert statuses["valkey"].state == statuses["ray"].state == statuses["agents"].state == "up"
        assert not (tmp_path / "data" / "logs" / "broker.log").exists()
        assert launcher.endpoints().kafka_bootstrap == broker.address
        # The launcher created the topics on the external broker before starting the relay.
        assert set(PLATFORM_TOPICS) <= list_topics(broker.address)
    finally:
        stopped = {status.name: status for status in launcher.down()}
    assert stopped["broker"].state == "external"
    assert broker.is_alive()
    assert broker.is_healthy()


def test_failed_up_cleans_up_and_names_the_component(tmp_path: Path, stack: RunningStack) -> None:
    # Ray is borrowed from the session stack (external), so only broker and Valkey start.
    settings = HeroSettings(data_dir=tmp_path / "data", ray_address=stack.endpoints.ray_address)
    failing = [sys.executable, "-c", "print('relay cannot start'); raise SystemExit(3)"]
    launcher = LocalStack(settings, relay_command=failing)
    with pytest.raises(StackError) as caught:
        launcher.up()
    message = str(caught.value)
    assert message.startswith("relay: exited with code 3")
    assert "relay cannot start" in message
    assert not (tmp_path / "data" / "run" / "stack.json").exists()
    assert all(status.state != "up" for status in launcher.status())


def test_failed_agents_stop_the_stack_and_are_named(
    tmp_path: Path, relay_standin: list[str], stack: RunningStack
) -> None:
    settings = HeroSettings(data_dir=tmp_path / "data", ray_address=stack.endpoints.ray_address)
    failing = [sys.executable, "-c", "print('no agents today'); raise SystemExit(4)"]
    launcher = LocalStack(settings, relay_command=relay_standin, agents_command=failing)
    with pytest.raises(StackError) as caught:
        launcher.up()
    message = str(caught.value)
    assert message.startswith("agents: exited with code 4")
    assert "no agents today" in message
    assert not (tmp_path / "data" / "run" / "stack.json").exists()
    assert all(status.state != "up" for status in launcher.status())


def test_a_second_stack_on_the_same_ray_runs_agents_of_its_own(
    tmp_path: Path, relay_standin: list[str], stack: RunningStack
) -> None:
    # Two stacks' agent hosts in one Ray namespace: their actor names must not clash.
    settings = HeroSettings(data_dir=tmp_path / "data", ray_address=stack.endpoints.ray_address)
    launcher = LocalStack(settings, relay_command=relay_standin)
    report = launcher.up()
    try:
        statuses = {status.name: status for status in report.components}
        assert statuses["ray"].state == "external"
        assert statuses["agents"].state == "up", statuses["agents"]
        ours = host_pids(tmp_path / "data")
        assert not set(ours) & set(host_pids(stack.settings.data_dir))
    finally:
        stopped = {status.name: status for status in launcher.down()}
    assert stopped["agents"].detail == "stopped"
    # Ray (not ours here) ends the killed actors' workers; give it a moment.
    wait_until(lambda: not set(ours) & set(live_pids()), 10, "the second stack's hosts to end")
    session = {status.name: status.state for status in stack.launcher.status()}
    assert session["agents"] == session["ray"] == "up"
    assert set(host_pids(stack.settings.data_dir)) <= set(live_pids())


@pytest.mark.embedded_only(
    reason="Tansu's memory-only restart; Apache Kafka keeps its log across one "
    "(test_kafka_broker's test_markers_and_records_survive_a_kafka_restart)"
)
def test_broker_restarts_empty_on_the_same_port(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory()
    port, first_pid = broker.port, broker.pid
    asyncio.run(TopicAdmin(str(broker.address)).create(["doomed"], partitions=1))
    assert "doomed" in list_topics(str(broker.address))

    broker.kill()
    assert not broker.is_alive()
    assert first_pid not in live_pids()

    broker.start()
    wait_until(broker.is_healthy, 10, "the restarted broker to answer")
    assert broker.port == port
    assert broker.pid != first_pid
    assert "doomed" not in list_topics(str(broker.address))
