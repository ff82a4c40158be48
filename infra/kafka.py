"""Apache Kafka as the stack's broker (``hero up --broker kafka``): one JVM in KRaft mode,
broker and controller in one, on the loopback address, its log under ``<data_dir>/kafka``.

Unlike Tansu it keeps what it was given: a second ``up`` on the same data dir finds the topics
and records again (the storage is formatted once, never again).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from hero.config import LOOPBACK
from infra._health import kafka_answers
from infra._kafka_dist import java_binary, kafka_classpath
from infra._private import PRIVATE_UMASK
from infra._state import ProcessRecord
from infra.errors import ComponentError
from infra.ports import free_ports
from infra.processes import _PortedProcess

__all__ = ["BROKER_KIND_KAFKA", "KafkaProcess", "holds_kafka_log"]

BROKER_KIND_KAFKA = "kafka"
"""The ``kind`` a Kafka broker's record carries in stack.json (Tansu's records carry none)."""

_HEAP = ("-Xms512m", "-Xmx512m")
_FORMAT_TIMEOUT_S = 120.0
_NODE_ID = 1

# Only what says it started or why it did not: Kafka's INFO is thousands of lines per start.
_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.Kafka
        level: INFO
"""


class KafkaProcess(_PortedProcess):
    """Apache Kafka 4.4 (``kafka.Kafka``) with a bounded heap; the controller listens on a
    second loopback port, chosen free at each start (the voter set is static, so it may move).
    """

    name = "broker"
    # A graceful stop flushes the log and closes it cleanly, so the next start does not
    # recover it: worth waiting for.
    stop_timeout = 30.0

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = LOOPBACK,
        kafka_home: Path | None = None,
        cache_dir: Path = Path("~/.cache/hero"),
    ) -> None:
        super().__init__(data_dir, port, host=host)
        self.kafka_home = kafka_home
        self.cache_dir = cache_dir
        self.controller_port: int | None = None

    @property
    def address(self) -> str | None:
        return f"{self.host}:{self.port}" if self.port is not None else None

    @property
    def home(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def log_dir(self) -> Path:
        # holds_kafka_log() looks for the same place.
        """Kafka's log (topics, records, the cluster metadata): kept across restarts."""
        return self.home / "data"

    def _prepare(self) -> None:
        super()._prepare()
        self.controller_port = free_ports(1, self.host, avoid={self.port or 0})[0]
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._classpath = kafka_classpath(self.kafka_home, self.cache_dir)
        (self.home / "log4j2.yaml").write_text(_LOG4J2)
        (self.home / "server.properties").write_text(self._properties())
        if not (self.log_dir / "meta.properties").is_file():
            self._format()

    def _properties(self) -> str:
        host, port, controller = self.host, self.port, self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Topics come from TopicAdmin only: a typo in a topic name must not create one.
            "auto.create.topics.enable": "false",
            # A consumer group's first member need not wait 3 s for others.
            "group.initial.rebalance.delay.ms": "0",
            # HERO_KAFKA_SESSION_TIMEOUT_MS may go below Kafka's default floor of 6 s.
            "group.min.session.timeout.ms": "1000",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            str(java_binary()),
            *_HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            self._classpath,
            main,
            *args,
        ]

    def _format(self) -> None:
        """Format the storage once (a new cluster id); never over an existing log."""
        command = self._java(
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id", _cluster_id(),
            "--config", str(self.home / "server.properties"),
            "--ignore-formatted",
        )  # fmt: skip
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_FORMAT_TIMEOUT_S,
                cwd=self.home,
                check=False,
                umask=PRIVATE_UMASK,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(self.name, "formatting Kafka's storage timed out") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-2000:]
            raise ComponentError(self.name, "cannot format Kafka's storage", output)

    def _command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.home / "server.properties"))

    def _cwd(self) -> Path:
        return self.home

    def _ready(self) -> bool:
        return self.address is not None and kafka_answers(self.address, timeout=2.0)

    def _extra_for_record(self) -> dict[str, str]:
        extra = {"kind": BROKER_KIND_KAFKA}
        if self.controller_port is not None:
            extra["controller_port"] = str(self.controller_port)
        return extra

    def adopt(self, record: ProcessRecord) -> None:
        super().adopt(record)
        if "controller_port" in record.extra:
            self.controller_port = int(record.extra["controller_port"])


def holds_kafka_log(data_dir: Path) -> bool:
    """Whether an earlier ``up --broker kafka`` formatted a Kafka log under ``data_dir``."""
    return (Path(data_dir).expanduser() / "kafka" / "data" / "meta.properties").is_file()


def _cluster_id() -> str:
    """What ``kafka-storage random-uuid`` prints: 16 random bytes, URL-safe base64, unpadded
    (never starting with '-', which a command line would take for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
