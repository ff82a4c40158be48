"""``hero up --replicas N``'s naming, without servers: the labels of the replicas, what the
launcher lists and stops for a stack.json that records them, and the names a replica may be
started with (a name picks a file under run/, so only the expected ones pass)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from hero.cli import app
from hero.config import HeroSettings
from hero.gateway.__main__ import replica_name
from infra import LocalStack, StackError
from infra._procfs import read_proc
from infra._state import ProcessRecord, StackState
from infra.gateway import GatewayProcess
from infra.local import COMPONENTS
from infra.processes import replica_label, split_label
from infra.usage import UsageProcess


def test_labels_name_the_first_replica_plainly_and_number_the_others() -> None:
    assert [replica_label("gateway", n) for n in (1, 2, 8)] == ["gateway", "gateway-2", "gateway-8"]
    assert split_label("gateway-2") == ("gateway", 2)
    assert split_label("usage") == ("usage", 1)
    # Not a replica number: the whole label is the name.
    assert split_label("gateway-9") == ("gateway-9", 1)
    assert split_label("gateway-1") == ("gateway-1", 1)
    assert split_label("gateway-x") == ("gateway-x", 1)


@pytest.mark.parametrize("replicas", [0, 9, -1])
def test_replicas_outside_one_to_eight_are_refused(replicas: int, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="replicas"):
        HeroSettings(data_dir=tmp_path, replicas=replicas)


def test_the_components_list_every_replica_next_to_its_first(tmp_path: Path) -> None:
    stack = LocalStack(HeroSettings(data_dir=tmp_path, replicas=3, broker="tansu"))
    names = list(stack.components)
    at = names.index("usage")
    assert names[at : at + 3] == ["usage", "usage-2", "usage-3"]
    at = names.index("gateway")
    assert names[at : at + 3] == ["gateway", "gateway-2", "gateway-3"]
    at = names.index("relay")
    assert names[at : at + 3] == ["relay", "relay-2", "relay-3"]
    assert not {"treasury-2", "agents-2", "ray-2"} & set(names)


def test_replicas_write_their_own_health_file_and_log(tmp_path: Path) -> None:
    settings = HeroSettings(data_dir=tmp_path)
    first, second = GatewayProcess(settings, 1), GatewayProcess(settings, 2, replica=2)
    assert (first.label, second.label) == ("gateway", "gateway-2")
    assert first.health_path.name == "gateway.health"
    assert second.health_path.name == "gateway-2.health"
    assert second.log_path.name == "gateway-2.log"
    assert UsageProcess(settings, replica=3).health_path.name == "usage-3.health"


def _record(name: str, pid: int) -> ProcessRecord:
    # A pid with a start time no process has: it reads as gone.
    return ProcessRecord(name=name, pid=pid, start_ticks=1, log=f"/nonexistent/{name}.log")


def test_status_and_down_cover_every_recorded_replica_whatever_replicas_says(
    tmp_path: Path,
) -> None:
    """A stack started with --replicas 3 is listed and stopped whole by a plain `hero down`."""
    state = StackState(
        data_dir=str(tmp_path), launcher_pid=1, started_at=datetime.now(UTC), complete=True
    )
    for i, name in enumerate(["usage", "usage-2", "usage-3", "gateway", "gateway-2", "gateway-3"]):
        state.processes[name] = _record(name, 4_000_000 + i)
    (tmp_path / "run").mkdir()
    state.save(tmp_path)
    stack = LocalStack(HeroSettings(data_dir=tmp_path, broker="tansu"))  # replicas: 1
    listed = [c.name for c in stack.status()]
    at = listed.index("gateway")
    assert listed[at : at + 3] == ["gateway", "gateway-2", "gateway-3"]  # each next to its first
    statuses = {c.name: c for c in stack.status()}
    assert statuses["gateway-3"].state == "down"
    assert "is gone" in (statuses["gateway-3"].detail or "")
    stopped = {c.name: c.detail for c in stack.down()}
    for name in ("usage-3", "gateway-2", "gateway-3"):
        assert stopped[name] == "was not running"
    assert StackState.load(tmp_path) is None


def test_respawn_is_for_a_dead_replica_of_a_running_stack(tmp_path: Path) -> None:
    stack = LocalStack(HeroSettings(data_dir=tmp_path, broker="tansu", replicas=2))
    with pytest.raises(StackError, match="only the replicas of relay, usage, gateway"):
        stack.respawn("treasury")
    with pytest.raises(StackError, match="not part of a stack running"):
        stack.respawn("gateway-2")


@pytest.mark.parametrize("name", ["gateway", "gateway-2", "gateway-8"])
def test_a_gateway_takes_its_replica_name(name: str) -> None:
    assert replica_name(name) == name


@pytest.mark.parametrize("name", ["gateway-9", "gateway-1", "gateway-2 ", "../gateway", "usage"])
def test_a_gateway_refuses_any_other_name(name: str) -> None:
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"--name must be gateway or gateway-2\.\.8"
    ):
        replica_name(name)


def test_a_usage_worker_refuses_a_name_it_would_write_a_file_under() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "streams", "usage", "--name", "../usage"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 2
    assert "--name must be usage, usage-2..8 or commands, got '../usage'" in answer.stderr


@pytest.mark.parametrize("value", ["0", "9", "two"])
def test_hero_up_refuses_replicas_out_of_range_before_starting_anything(
    value: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["up", "--replicas", value, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--replicas" in result.output
    assert not (tmp_path / "run" / "stack.json").exists()


def test_up_with_more_replicas_than_the_running_stack_says_how_to_get_them(
    tmp_path: Path,
) -> None:
    """Every recorded component is this test's own process (alive): only the new replicas
    are missing, and up says so instead of calling the stack partly running."""
    me = read_proc(os.getpid())
    assert me is not None
    state = StackState(
        data_dir=str(tmp_path), launcher_pid=1, started_at=datetime.now(UTC), complete=True
    )
    for name in COMPONENTS:
        state.processes[name] = ProcessRecord(
            name=name, pid=me.pid, start_ticks=me.start_ticks, log="/nonexistent.log"
        )
    (tmp_path / "run").mkdir()
    state.save(tmp_path)
    stack = LocalStack(HeroSettings(data_dir=tmp_path, broker="tansu", replicas=2))
    with pytest.raises(StackError, match="runs without relay-2, usage-2, gateway-2") as refused:
        stack.up()
    assert "hero up --replicas 2" in str(refused.value)
    assert StackState.load(tmp_path) == state  # nothing started, nothing forgotten


def test_a_fixed_gateway_port_must_leave_room_for_every_replica(tmp_path: Path) -> None:
    settings = HeroSettings(data_dir=tmp_path, broker="tansu", replicas=3, gateway_port=65534)
    with pytest.raises(StackError, match="ports 65534-65536"):
        LocalStack(settings).up()
    assert StackState.load(tmp_path) is None  # nothing started
