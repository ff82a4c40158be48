"""The Ray head of the embedded stack (``ray start --head --block``), bound to 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from hero.config import LOOPBACK
from infra._health import ray_gcs_answers
from infra._logs import contains
from infra._state import ProcessRecord
from infra._stop import process_tree
from infra.errors import ComponentError
from infra.models import ComponentName
from infra.processes import _PortedProcess
from infra.ray_client import ray_env_for_host

__all__ = ["RayHead"]


class RayHead(_PortedProcess):
    """The Ray head (``ray start --head --block``) bound to the loopback address; worker
    nodes (:class:`infra.ray_nodes.RayWorkerNode`) may join it.

    Its session files live under ``data_dir/ray``. Ray puts AF_UNIX sockets there, whose paths
    may not exceed 107 bytes; when ``data_dir/ray`` is too long for that, Ray is given a short
    symlink to it under /tmp (named after a hash of that directory), removed when Ray stops.

    The head's GCS probes every node each ``health_check_period_ms`` and declares it dead
    after ``health_check_failures`` missed probes: that is how long a killed node's agent
    hosts wait before Ray restarts them on another node.
    """

    name: ComponentName = "ray"
    stop_timeout = 15.0
    READY_MARK = "Ray runtime started"
    # <temp>/session_YYYY-MM-DD_HH-MM-SS_ffffff_<pid:7>/sockets/plasma_store, with some margin.
    _SOCKET_SUFFIX_LEN = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
    _SOCKET_MARGIN = 8
    _MAX_SOCKET_PATH = 107
    _SESSIONS_KEPT = 3

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        num_cpus: int = 2,
        health_check_period_ms: int = 1000,
        health_check_failures: int = 5,
    ) -> None:
        super().__init__(data_dir, port, host=host)
        self.num_cpus = num_cpus
        self.health_check_period_ms = health_check_period_ms
        self.health_check_failures = health_check_failures
        self.session_dir = self.data_dir / self.name
        self.temp_dir = self._choose_temp_dir()

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def client_env(self) -> dict[str, str]:
        """Environment a Ray client of this head needs (see infra.ray_client)."""
        return ray_env_for_host(self.host)

    def _choose_temp_dir(self) -> Path:
        budget = self._MAX_SOCKET_PATH - self._SOCKET_SUFFIX_LEN - self._SOCKET_MARGIN
        if len(str(self.session_dir)) <= budget:
            return self.session_dir
        digest = hashlib.sha256(str(self.session_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"hero-ray-{digest}"

    @property
    def _uses_link(self) -> bool:
        return self.temp_dir != self.session_dir

    def _prepare(self) -> None:
        super()._prepare()
        self.session_dir.mkdir(parents=True, exist_ok=True)
        if self._uses_link:
            self._make_link()
        self._prune_sessions()

    def _make_link(self) -> None:
        link = self.temp_dir
        if link.is_symlink():
            if Path(os.readlink(link)) == self.session_dir:
                return
            if link.lstat().st_uid != os.getuid():
                raise ComponentError(self.name, f"{link} exists and belongs to another user")
            link.unlink()
        elif link.exists():
            raise ComponentError(self.name, f"{link} exists and is not our symlink")
        link.symlink_to(self.session_dir, target_is_directory=True)

    def _prune_sessions(self) -> None:
        # Each start leaves a session directory (logs mostly); keep only the latest few.
        sessions = sorted(p for p in self.session_dir.glob("session_2*") if p.is_dir())
        for old in sessions[: -self._SESSIONS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)

    def _command(self) -> list[str]:
        return [
            sys.executable, "-m", "ray.scripts.scripts", "start",
            "--head", "--block",
            "--node-ip-address", self.host,
            "--node-name", self.name,
            "--port", str(self.port),
            "--include-dashboard", "false",
            "--temp-dir", str(self.temp_dir),
            "--disable-usage-stats",
            "--num-cpus", str(self.num_cpus),
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = super()._env()
        # A RAY_ADDRESS meant for clients must not steer the head.
        env.pop("RAY_ADDRESS", None)
        env.update(self.client_env)
        env.update(
            {
                "RAY_USAGE_STATS_ENABLED": "0",
                # SIGTERM drains the node for up to 30 s by default: we want a prompt stop.
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                "PYTHONUNBUFFERED": "1",
                # Read by the head's GCS (a worker node's raylet is probed, it probes nothing).
                "RAY_health_check_period_ms": str(self.health_check_period_ms),
                "RAY_health_check_timeout_ms": str(self.health_check_period_ms),
                "RAY_health_check_failure_threshold": str(self.health_check_failures),
            }
        )
        return env

    def _ready(self) -> bool:
        # `ray start` prints the mark once the raylet has registered with the GCS.
        return self.address is not None and self._started_mark() and ray_gcs_answers(self.address)

    def _started_mark(self) -> bool:
        return contains(self.log_path, self.READY_MARK, since=self._log_offset)

    def is_healthy(self) -> bool:
        return (
            self.is_alive()
            and self.address is not None
            and ray_gcs_answers(self.address)
            and self._raylet_alive()
        )

    def _raylet_alive(self) -> bool:
        return self.raylet_pid() is not None

    def raylet_pid(self) -> int | None:
        """The pid of this node's raylet (its scheduler), if it runs."""
        if self._pid is None or self._start_ticks is None:
            return None
        tree = process_tree(self._pid, self._start_ticks)
        return next((info.pid for info in tree if info.comm == "raylet"), None)

    def _after_stop(self) -> None:
        link = self.temp_dir
        if self._uses_link and link.is_symlink() and Path(os.readlink(link)) == self.session_dir:
            link.unlink()

    def _extra_for_record(self) -> dict[str, str]:
        return {"temp_dir": str(self.temp_dir), "session_dir": str(self.session_dir)}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        if "temp_dir" in record.extra:
            self.temp_dir = Path(record.extra["temp_dir"])
