"""Where Apache Kafka's jars come from: ``HERO_KAFKA_HOME`` (an unpacked distribution), or a
cache that Maven fills once (``org.apache.kafka:kafka_2.13`` and its runtime dependencies)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from infra.errors import StackError

__all__ = ["KAFKA_VERSION", "java_binary", "kafka_classpath"]

KAFKA_VERSION = "4.4.0"
_SCALA = "2.13"
_LOG4J = "2.25.5"
_FETCH_TIMEOUT_S = 900.0
_COMPLETE = ".complete"

# kafka_2.13 brings the broker, the controller and StorageTool; Kafka logs through slf4j 1.7,
# which needs log4j's binding for it, or it logs nothing at all.
_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>hero</groupId>
  <artifactId>hero-kafka-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{_SCALA}</artifactId>
      <version>{KAFKA_VERSION}</version>
      <scope>runtime</scope>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{_LOG4J}</version>
      <scope>runtime</scope>
    </dependency>
  </dependencies>
</project>
"""


def java_binary() -> Path:
    """``$JAVA_HOME/bin/java``, else ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is not None and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("java")
    if found is None:
        raise StackError("broker: Apache Kafka needs Java 17 or later (no java on the PATH)")
    return Path(found)


def kafka_classpath(kafka_home: Path | None, cache_dir: Path) -> str:
    """The broker's classpath (``dir/*``): the distribution's ``libs``, or the cached jars,
    fetched with Maven on first use."""
    if kafka_home is not None:
        libs = Path(kafka_home).expanduser() / "libs"
        if not any(libs.glob(f"kafka_{_SCALA}-*.jar")):
            raise StackError(
                f"broker: HERO_KAFKA_HOME={kafka_home} is not an unpacked Apache Kafka "
                f"distribution (no {libs}/kafka_{_SCALA}-*.jar)"
            )
        return f"{libs}/*"
    return f"{_cached_libs(Path(cache_dir).expanduser())}/*"


def _cached_libs(cache_dir: Path) -> Path:
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    if (home / _COMPLETE).is_file():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    # Two launchers (two data dirs) may start at once: one fetches, the other waits for it.
    with _locked(home / ".lock"):
        if not (home / _COMPLETE).is_file():
            _fetch(home, libs)
    return libs


def _fetch(home: Path, libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "broker: Apache Kafka is neither in HERO_KAFKA_HOME nor cached, and Maven (mvn) "
            "is not on the PATH to fetch it"
        )
    pom = home / "pom.xml"
    pom.write_text(_POM)
    partial = home / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}", "-DincludeScope=runtime",
    ]  # fmt: skip
    began = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        message = f"broker: fetching Kafka with Maven took over {_FETCH_TIMEOUT_S:.0f} s"
        raise StackError(message) from exc
    if done.returncode != 0 or not any(partial.glob(f"kafka_{_SCALA}-*.jar")):
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise StackError(f"broker: fetching Kafka with Maven failed:\n{output}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.replace(libs)
    (home / _COMPLETE).write_text(f"fetched in {time.monotonic() - began:.1f} s\n")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
