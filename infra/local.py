"""The local stack: broker, Valkey, Ray, the relay, the treasury, the usage worker, the
gateway and the agent hosts under one data dir.

``up`` records every process in ``<data_dir>/run/stack.json`` as soon as it is spawned, so
``down`` -- from any process, even after a launcher crash -- stops exactly those pids and
their sessions, and nothing else. A piece configured as external (``HERO_KAFKA_BOOTSTRAP``,
``HERO_REDIS_URL``, ``HERO_RAY_ADDRESS``) is never started or stopped, only probed. The
agent hosts, the treasury and the usage worker are always ours: the hosts run on whichever Ray
the stack uses, the treasury (payment webhook, conversion, billing) needs only the event store,
the usage worker (utilization samples -> hourly usage facts) the broker, Valkey and the store,
the gateway (REST, streams, read models) Valkey and the store.

``HERO_REPLICAS`` (``hero up --replicas N``) runs N relays, N gateways and N usage workers,
recorded as ``relay``, ``relay-2``, ..., ``gateway``, ``gateway-2``, ... and ``usage``,
``usage-2``, ...: each needs only the shared store, broker and Valkey, so any number can run
side by side (one relay publishes, the others stand by on the store's lease); ``down`` stops
every one recorded, and ``respawn`` starts a dead one again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal

from hero.config import LOOPBACK, HeroSettings, mask_url
from hero.log.topics import TopicAdmin
from infra._health import kafka_answers, ray_gcs_answers, redis_answers
from infra._kafka_dist import KAFKA_VERSION, kafka_classpath
from infra._private import make_private
from infra._state import (
    ProcessRecord,
    StackState,
    SupervisorReport,
    load_ports,
    save_ports,
    stack_lock,
)
from infra._supervision import (
    apply_supervision,
    spawn_supervised_up,
    start_supervisor,
    stop_supervisor,
    supervisor_alive,
)
from infra._sync import run_sync
from infra.commands import CommandsProcess, commands_detail
from infra.errors import ComponentError, StackError
from infra.gateway import GatewayProcess, gateway_degraded, gateway_detail, reachable_url
from infra.hero_processes import AgentsProcess, RelayProcess
from infra.kafka import BROKER_KIND_KAFKA, KafkaProcess, holds_kafka_log
from infra.models import RAY_WORKER_NAMES, ComponentName, ComponentStatus, Endpoints, UpReport
from infra.ports import free_ports, port_is_free
from infra.postgres import (
    PostgresProcess,
    external_store,
    prepare_store,
    store_answers,
    store_is_postgres,
)
from infra.processes import (
    BrokerProcess,
    ManagedProcess,
    ValkeyProcess,
    replica_label,
    split_label,
)
from infra.ray_client import ray_env_for_host
from infra.ray_head import RayHead
from infra.ray_nodes import RayWorkerNode, ray_worker_name, ray_worker_names
from infra.treasury import TreasuryProcess, treasury_detail
from infra.usage import UsageProcess, usage_detail

__all__ = ["COMPONENTS", "LocalStack", "is_dependency", "restart_order"]

COMPONENTS: tuple[ComponentName, ...] = (
    "broker", "valkey", "ray", "relay", "treasury", "usage", "commands", "gateway", "agents",
)  # fmt: skip
_SERVERS: tuple[ComponentName, ...] = ("ray", "broker", "valkey")  # spawn order: slowest first
# The gateway first: no new commands come in. The agents next: they are Ray's driver (their
# hosts are its actors) and the relay's reader. The treasury and the usage worker then: they
# write to the store, and the relay should carry their last events out.
_STOP_ORDER: tuple[ComponentName, ...] = (
    "gateway", "agents", "treasury", "usage", "commands", "relay", "ray", "valkey", "broker",
    "postgres",
)  # fmt: skip
# Grace for a Ray client cut off from its restarted head: it has nothing left to finish.
_CUT_OFF_STOP_S = 3.0
# What `hero up --replicas N` runs N of (relay, relay-2, ...; gateway, gateway-2, ...; ...).
_REPLICATED: tuple[ComponentName, ...] = ("relay", "usage", "gateway")


class LocalStack:
    """Start, inspect and stop the embedded stack described by ``settings``."""

    def __init__(
        self,
        settings: HeroSettings,
        *,
        relay_command: Sequence[str] | None = None,
        agents_command: Sequence[str] | None = None,
        treasury_command: Sequence[str] | None = None,
        usage_command: Sequence[str] | None = None,
        commands_command: Sequence[str] | None = None,
        gateway_command: Sequence[str] | None = None,
    ) -> None:
        if settings.broker is None:
            # A data dir that holds a Kafka log stays on Kafka: a plain `hero up` finds it.
            kind = "kafka" if holds_kafka_log(settings.data_dir) else "tansu"
            settings = settings.model_copy(update={"broker": kind})
        self.settings = settings
        self.data_dir = settings.data_dir
        self.relay_command = tuple(relay_command) if relay_command is not None else None
        self.agents_command = tuple(agents_command) if agents_command is not None else None
        self.treasury_command = tuple(treasury_command) if treasury_command is not None else None
        self.usage_command = tuple(usage_command) if usage_command is not None else None
        self.commands_command = tuple(commands_command) if commands_command is not None else None
        self.gateway_command = tuple(gateway_command) if gateway_command is not None else None
        # Set by the supervisor that runs the start (recorded in stack.json from the first
        # save on); the processes the start spawned are kept, with their exit statuses.
        self.supervisor_record: ProcessRecord | None = None
        self.started: list[ManagedProcess] = []

    @property
    def components(self) -> tuple[str, ...]:
        """COMPONENTS with their replicas (``gateway-2``, ...) and the Ray worker nodes
        ``ray_nodes`` asks for (``ray-2``, ...), and the PostgreSQL store when the stack's store
        is one."""
        names = [label for name in COMPONENTS for label in _labels(name, self._copies(name))]
        return (*names, "postgres") if store_is_postgres(self.settings) else tuple(names)

    def _copies(self, name: ComponentName) -> int:
        if name == "ray":
            return self.settings.ray_nodes
        return self.settings.replicas if name in _REPLICATED else 1

    # -- public API ------------------------------------------------------------------------

    def up(self) -> UpReport:
        """Start what is not running yet; a running stack is reported and left untouched."""
        self._fetch_kafka()
        began = time.monotonic()
        make_private(self.data_dir)
        with stack_lock(self.data_dir, wait=self.settings.up_timeout_s + 30.0):
            state = StackState.load(self.data_dir)
            if state is not None:
                live, dead = self._split_live(state)
                if state.complete and dead and self._only_ray_workers(state, dead):
                    return self._restart_ray_workers(state, dead, began)
                if state.complete and not dead:
                    if self.settings.supervise and not supervisor_alive(state):
                        start_supervisor(self.settings, state)
                    return UpReport(
                        components=self._statuses(state),
                        seconds=round(time.monotonic() - began, 3),
                        already_running=True,
                        endpoints=self._endpoints_or_none(),
                    )
                missing = [
                    name
                    for name in dead
                    if name not in state.processes and split_label(name)[1] > 1
                ]
                if live and missing and len(missing) == len(dead):
                    raise StackError(
                        f"the stack under {self.data_dir} runs without {', '.join(missing)} "
                        f"(started with fewer replicas); run `hero down`, then `hero up "
                        f"--replicas {self.settings.replicas}`"
                    )
                if live:
                    raise StackError(
                        f"the stack under {self.data_dir} is only partly running "
                        f"(up: {', '.join(live)}; down: {', '.join(dead) or 'none'}); "
                        "run `hero down`, then `hero up`"
                    )
                self._forget(state)
            if self.settings.supervise:
                report = spawn_supervised_up(self.settings, self._commands(), began)
                # Its endpoints came through a file, masked: this process's own, unmasked.
                return report.model_copy(update={"endpoints": self._endpoints_or_none()})
            return self._start(began)

    def start_here(self, began: float) -> UpReport:
        """Start the stack in this process (the supervisor's ``--up``; the lock is the
        launcher's, who waits for it)."""
        return self._start(began)

    def _commands(self) -> dict[str, list[str]]:
        commands = {
            "relay": self.relay_command,
            "agents": self.agents_command,
            "treasury": self.treasury_command,
            "usage": self.usage_command,
            "gateway": self.gateway_command,
        }
        return {name: list(command) for name, command in commands.items() if command}

    def down(self) -> list[ComponentStatus]:
        """Stop the recorded processes (gateway, agents, treasury, usage, relay, ray, valkey,
        broker) and all they started."""
        with stack_lock(self.data_dir, wait=self.settings.up_timeout_s + 30.0):
            state = StackState.load(self.data_dir)
            if state is None:
                return self._nothing_running("no stack running under " + str(self.data_dir))
            results: dict[str, ComponentStatus] = {}
            failures: list[str] = []
            try:  # first: nothing may be started again while the stack stops
                supervisor = stop_supervisor(self.settings, state)
            except ComponentError as exc:
                raise StackError(f"hero down could not stop the supervisor: {exc}") from exc
            if supervisor is not None:
                results["supervisor"] = supervisor
            for name in _stop_sequence(state):
                results[name] = self._stop_one(name, state.processes[name], failures)
            if failures:
                # Keep stack.json: it is the only record of what is still running.
                raise StackError("hero down left processes behind: " + "; ".join(failures))
            self._forget(state)
            stopped = [
                results.get(name) or self._unrecorded(name, "not started by this stack")
                for name in _with_recorded(self.components, state)
            ]
            return [*stopped, results["supervisor"]] if "supervisor" in results else stopped

    def restart(self, label: str) -> ManagedProcess:
        """Start a dead recorded process again as ``up`` started it (same command, port and
        data dir), record its new pid, and return it without waiting for it: what the
        supervisor does after a crash. What the dead one left of its tree (a Ray head's
        raylet, ...) is stopped first. A process still running is refused."""
        with stack_lock(self.data_dir, wait=self.settings.up_timeout_s + 30.0):
            state = StackState.load(self.data_dir)
            record = state.processes.get(label) if state is not None else None
            if state is None or not state.complete or record is None:
                raise StackError(f"{label} is not part of a stack running under {self.data_dir}")
            old = self._attach(label, record)
            if old.is_alive():
                raise StackError(f"{label} is still running as pid {record.pid}")
            old.stop(timeout=0.0)
            proc = self._attach(label, record, self._endpoints_of(state))
            proc.spawn()
            state.processes[label] = proc.record()
            state.save(self.data_dir)
            return proc

    def restarted(self, label: str, proc: ManagedProcess) -> None:
        """What a restarted process needs once ready: an embedded Tansu comes back empty, so
        its topics are made again (the relay refills them); a new Ray head's clients are
        stopped, to be started again on it."""
        if split_label(label)[0] == "broker" and proc.address is not None:
            self._ensure_topics(proc.address, proc)
        if label == "ray":
            self._stop_ray_clients()

    def _stop_ray_clients(self) -> None:
        """A new Ray head is a new cluster: the agents (its driver) and the worker nodes of
        the old one would run on, cut off; stopped, they are started again on it."""
        state = StackState.load(self.data_dir)
        records = state.processes if state is not None else {}
        for label, record in records.items():
            if label == "agents" or label in RAY_WORKER_NAMES:
                self._attach(label, record).stop(timeout=_CUT_OFF_STOP_S)

    def process(self, label: str, record: ProcessRecord) -> ManagedProcess:
        """The recorded process ``label``, to probe or stop."""
        return self._attach(label, record)

    def respawn(self, label: str) -> ComponentStatus:
        """Start again a dead replica of the running stack (``usage``, ``gateway-2``, ...) as
        ``up`` started it, a gateway on its port; what a supervisor does after a crash. A
        replica still running is refused, and so is anything not replicated."""
        name, replica = split_label(label)
        if name not in _REPLICATED:
            raise StackError(
                f"{label!r}: only the replicas of {', '.join(_REPLICATED)} start on their own"
            )
        with stack_lock(self.data_dir, wait=self.settings.up_timeout_s + 30.0):
            state = StackState.load(self.data_dir)
            record = state.processes.get(label) if state is not None else None
            if state is None or not state.complete or record is None:
                raise StackError(f"{label} is not part of a stack running under {self.data_dir}")
            if self._alive(record):
                raise StackError(f"{label} is still running as pid {record.pid}")
            proc = self._replica(name, replica, record, self.endpoints())
            proc.spawn()
            state.processes[label] = proc.record()
            state.save(self.data_dir)
            try:
                proc.wait_ready(self.settings.up_timeout_s)
            except ComponentError:
                proc.kill()
                raise
            return self._owned_status(label, state.processes[label])

    def _replica(
        self, name: str, replica: int, record: ProcessRecord, endpoints: Endpoints
    ) -> ManagedProcess:
        command = json.loads(record.extra.get("command", "null"))
        if name == "relay":
            return RelayProcess(
                self.settings,
                endpoints.kafka_bootstrap,
                command=command,
                purge_on_refill=record.extra.get("purge_on_refill") == "true",
                replica=replica,
            )
        if name == "usage":
            return UsageProcess(
                self.settings,
                endpoints.kafka_bootstrap,
                endpoints.redis_url,
                command=command,
                replica=replica,
            )
        return GatewayProcess(
            self.settings,
            record.port,
            endpoints.redis_url,
            endpoints.kafka_bootstrap,
            endpoints.treasury_url or "",
            command=command,
            replica=replica,
        )

    def status(self) -> list[ComponentStatus]:
        state = StackState.load(self.data_dir)
        if state is None:
            return self._nothing_running("not running")
        return self._statuses(state)

    def endpoints(self) -> Endpoints:
        """External settings win; the rest comes from the running stack's state file."""
        external = self._external()
        owned = [name for name in ("broker", "valkey", "ray") if name not in external]
        state = self._state_for_endpoints(required=bool(owned))
        if owned:
            if state is None or not state.complete:
                raise StackError(f"no stack running under {self.data_dir}; run `hero up`")
            records = state.processes
            dead = [name for name in owned if name not in records or not self._alive(records[name])]
            if dead:
                raise StackError(
                    f"the stack under {self.data_dir} is not running ({', '.join(dead)} down); "
                    "run `hero down`, then `hero up`"
                )
        return self._endpoints_of(state)

    def _endpoints_of(self, state: StackState | None) -> Endpoints:
        """The endpoints stack.json records, alive or not (a restart puts a process back on
        the addresses its peers use)."""
        external = self._external()
        owned = [name for name in ("broker", "valkey", "ray") if name not in external]
        records = state.processes if state is not None and owned else {}
        return Endpoints(
            kafka_bootstrap=external.get("broker") or _address(records, "broker"),
            broker=self._broker_kind(records),
            redis_url=external.get("valkey") or self._redis_url(records["valkey"]),
            ray_address=external.get("ray") or _address(records, "ray"),
            store_url=self.settings.effective_store_url,
            treasury_url=_url_of_record(state, "treasury"),
            gateway_url=_url_of_record(state, "gateway"),
            gateway_urls=_gateway_urls(state),
            ray_env={} if "ray" in external else ray_env_for_host(LOOPBACK),
        )

    def _broker_kind(self, records: dict[str, ProcessRecord]) -> Literal["tansu", "kafka"]:
        """The running broker's kind as started (stack.json), or HERO_BROKER's for an
        external one."""
        record = records.get("broker")
        if record is None:
            return "kafka" if self.settings.broker == "kafka" else "tansu"
        return "kafka" if record.extra.get("kind") == BROKER_KIND_KAFKA else "tansu"

    def _state_for_endpoints(self, *, required: bool) -> StackState | None:
        if required:
            return StackState.load(self.data_dir)
        try:  # everything external: the state file only adds the treasury's and gateway's
            return StackState.load(self.data_dir)
        except StackError:
            return None

    # -- up ------------------------------------------------------------------------------------

    def _start(self, began: float) -> UpReport:
        deadline = began + self.settings.up_timeout_s
        external = self._external()
        if "ray" in external and self.settings.ray_nodes > 1:
            raise StackError(
                "ray_nodes (--ray-nodes, HERO_RAY_NODES) starts worker nodes of the embedded"
                " Ray head only; an external Ray (HERO_RAY_ADDRESS) brings its own nodes"
            )
        self._check_external(external)
        owned = [name for name in _SERVERS if name not in external]
        store: list[ComponentName] = ["postgres"] if self.settings.embedded_postgres else []
        ports = self._choose_ports([*store, *owned])
        state = StackState(
            data_dir=str(self.data_dir),
            launcher_pid=os.getpid(),
            started_at=datetime.now(UTC),
            ports=ports,
            external={name: mask_url(value) for name, value in external.items()},
            supervisor=self.supervisor_record,
        )
        started: list[ManagedProcess] = []
        ready_after: dict[str, float] = {}
        try:
            postgres = PostgresProcess(self.data_dir, ports["postgres"]) if store else None
            if postgres is not None:  # first: the relay and the treasury need the store
                self._spawn(postgres, state, started)
            servers = {name: self._server(name, ports[name]) for name in owned}
            for name in owned:
                self._spawn(servers[name], state, started)
            if postgres is not None:
                postgres.wait_ready(_remaining(deadline))
                postgres.ensure_database()  # every process started below reads its URL
                ready_after["postgres"] = time.monotonic() - began
            if store_is_postgres(self.settings):
                prepare_store(self.settings.effective_store_url)
            broker = servers.get("broker")
            if broker is not None:
                broker.wait_ready(_remaining(deadline))
                ready_after["broker"] = time.monotonic() - began
            bootstrap = external.get("broker") or _required(broker.address if broker else None)
            self._ensure_topics(bootstrap, broker)
            # The relays need only the broker: they start while Ray is still coming up. One
            # takes the store's lease and publishes; the others stand by.
            relays = [
                RelayProcess(
                    self.settings,
                    bootstrap,
                    command=self.relay_command,
                    purge_on_refill=broker is not None,
                    replica=replica,
                )
                for replica in range(1, self.settings.replicas + 1)
            ]
            for relay in relays:
                self._spawn(relay, state, started)
            # The treasury needs only the store: it starts while Ray is still coming up, too.
            treasury = TreasuryProcess(
                self.settings, ports["treasury"], command=self.treasury_command
            )
            self._spawn(treasury, state, started)
            # The usage worker needs the broker, the store and Valkey: it starts once Valkey
            # answers (quick), still while Ray is coming up.
            valkey = servers.get("valkey")
            if valkey is not None:
                valkey.wait_ready(_remaining(deadline))
                ready_after["valkey"] = time.monotonic() - began
            redis_url = external.get("valkey") or _required(_url_of(valkey))
            replicas = range(1, self.settings.replicas + 1)
            usages = [
                UsageProcess(
                    self.settings, bootstrap, redis_url, command=self.usage_command, replica=n
                )
                for n in replicas
            ]
            for usage in usages:
                self._spawn(usage, state, started)
            # The command processor needs the broker and the store.
            commands = CommandsProcess(self.settings, bootstrap, command=self.commands_command)
            self._spawn(commands, state, started)
            # The gateways need Valkey and the store (their read models follow the store).
            gateways = [
                GatewayProcess(
                    self.settings,
                    ports[replica_label("gateway", n)],
                    redis_url,
                    bootstrap,
                    _required(treasury.url),
                    command=self.gateway_command,
                    replica=n,
                )
                for n in replicas
            ]
            for gateway in gateways:
                self._spawn(gateway, state, started)
            waits = [servers["ray"]] if "ray" in servers else []
            workers: list[RayWorkerNode] = []
            for proc in [*waits, *relays, treasury, *usages, commands, *gateways]:
                proc.wait_ready(_remaining(deadline))
                ready_after[proc.label] = time.monotonic() - began
                if isinstance(proc, RayHead):  # the worker nodes join it as soon as it runs
                    workers = self._ray_workers(proc.address)
                    for worker in workers:
                        self._spawn(worker, state, started)
            # Before the hosts: they are spread over the nodes that are up when they start.
            for worker in workers:
                worker.wait_ready(_remaining(deadline))
                ready_after[worker.label] = time.monotonic() - began
            # The hosts need Ray, the broker and the store; the relay feeds them. stack.json is
            # not complete yet, so the endpoints go to them explicitly.
            endpoints = Endpoints(
                kafka_bootstrap=bootstrap,
                broker="kafka" if self.settings.broker == "kafka" else "tansu",
                redis_url=redis_url,
                ray_address=external.get("ray") or _required(servers["ray"].address),
                store_url=self.settings.effective_store_url,
                treasury_url=treasury.url,
                gateway_url=gateways[0].url,
                gateway_urls=[_required(g.url) for g in gateways],
                ray_env={} if "ray" in external else ray_env_for_host(LOOPBACK),
            )
            agents = AgentsProcess(self.settings, endpoints, command=self.agents_command)
            self._spawn(agents, state, started)
            agents.wait_ready(_remaining(deadline))
            ready_after[agents.name] = time.monotonic() - began
        except BaseException as exc:
            self._abort(started)
            if isinstance(exc, StackError) or not isinstance(exc, Exception):
                raise
            raise StackError(f"hero up failed: {exc}") from exc
        self.started = started
        seconds = round(time.monotonic() - began, 3)
        make_private(self.data_dir)  # what the launcher itself wrote meanwhile (run/, logs)
        state.complete = True
        state.seconds = seconds
        state.save(self.data_dir)
        save_ports(self.data_dir, ports)
        statuses = self._statuses(state)
        for status in statuses:
            if status.name in ready_after and status.state == "up":
                status.detail = _join(
                    status.detail, f"ready after {ready_after[status.name]:.1f} s"
                )
        return UpReport(
            components=statuses,
            seconds=seconds,
            already_running=False,
            endpoints=self._endpoints_or_none(),
        )

    def _fetch_kafka(self) -> None:
        """Apache Kafka's jars, fetched with Maven on a machine's first ``up --broker kafka``:
        before the clock of HERO_UP_TIMEOUT_S starts, as it may take a minute or more."""
        if self.settings.broker == "kafka" and not self.settings.kafka_bootstrap:
            kafka_classpath(self.settings.kafka_home, self.settings.cache_dir)

    def _broker(self, port: int | None) -> ManagedProcess:
        if self.settings.broker == "kafka":
            return self._kafka(port)
        return BrokerProcess(self.data_dir, port, host=LOOPBACK)

    def _kafka(self, port: int | None) -> KafkaProcess:
        settings = self.settings
        return KafkaProcess(
            self.data_dir,
            port,
            host=LOOPBACK,
            kafka_home=settings.kafka_home,
            cache_dir=settings.cache_dir,
        )

    def _server(self, name: ComponentName, port: int) -> ManagedProcess:
        # Internal: loopback only, even when the gateway listens on every interface.
        host = LOOPBACK
        if name == "broker":
            return self._broker(port)
        if name == "valkey":
            return ValkeyProcess(self.data_dir, port, host=host)
        return RayHead(
            self.data_dir,
            port,
            host=host,
            health_check_period_ms=self.settings.ray_health_check_period_ms,
            health_check_failures=self.settings.ray_health_check_failures,
        )

    def _ray_workers(self, head_address: str | None) -> list[RayWorkerNode]:
        return [
            RayWorkerNode(self.data_dir, name, head_address, host=LOOPBACK)
            for name in ray_worker_names(self.settings.ray_nodes)
        ]

    def _only_ray_workers(self, state: StackState, dead: list[str]) -> bool:
        head = state.processes.get("ray")
        return (
            head is not None
            and self._alive(head)
            and all(name in RAY_WORKER_NAMES for name in dead)
        )

    def _restart_ray_workers(self, state: StackState, dead: list[str], began: float) -> UpReport:
        """Start again the worker nodes that died (a node lost, its raylet killed): the rest
        of the stack runs on. Ray places new work on them; agent hosts move back to them
        when the agents process rebalances."""
        deadline = began + self.settings.up_timeout_s
        head = state.processes["ray"].address
        restarted: list[ManagedProcess] = []
        try:
            for name in dead:
                old = self._attach(name, state.processes[name])
                old.stop(timeout=0.0)  # what its raylet's death left of the node's processes
                worker = RayWorkerNode(self.data_dir, ray_worker_name(name), head, host=LOOPBACK)
                self._spawn(worker, state, restarted)
            for proc in restarted:
                proc.wait_ready(_remaining(deadline))
        except Exception as exc:
            self._abort(restarted, forget=False)
            raise StackError(f"hero up could not restart the Ray worker nodes: {exc}") from exc
        return UpReport(
            components=self._statuses(state),
            seconds=round(time.monotonic() - began, 3),
            already_running=False,
            endpoints=self._endpoints_or_none(),
        )

    def _spawn(
        self, proc: ManagedProcess, state: StackState, started: list[ManagedProcess]
    ) -> None:
        proc.spawn()
        started.append(proc)
        # Recorded at once: if this launcher dies now, `hero down` still finds the process.
        state.processes[proc.label] = proc.record()
        state.save(self.data_dir)

    def _ensure_topics(self, bootstrap: str, broker: ManagedProcess | None) -> None:
        admin = TopicAdmin(bootstrap, partitions=self.settings.kafka_partitions)
        try:
            run_sync(admin.ensure_topics)
        except Exception as exc:
            log_tail = broker.log_tail() if broker is not None else ""
            raise ComponentError("broker", f"cannot create the topics: {exc}", log_tail) from exc

    def _abort(self, started: list[ManagedProcess], *, forget: bool = True) -> None:
        """Undo a failed up: stop what it started, newest first, and forget the state."""
        survivors = False
        for proc in reversed(started):
            try:
                proc.stop()
            except ComponentError:
                survivors = True
        if forget and not survivors:
            # Otherwise the state file stays: it lists the survivors for `hero down`.
            StackState.remove(self.data_dir)

    def _choose_ports(self, owned: list[ComponentName]) -> dict[str, int]:
        """Ports for the ``owned`` servers, the treasury and the gateway: those of the previous
        run when still free, so addresses stay put.

        The treasury's port is HERO_TREASURY_PORT when set: a payment provider is configured
        with the webhook's address, so it must not move. Taken, it fails the treasury's start.
        The gateway's is HERO_GATEWAY_PORT when set, likewise (clients are configured with it);
        ``gateway-2`` ... then take the ports after it.
        """
        host = LOOPBACK
        previous = load_ports(self.data_dir)
        ports: dict[str, int] = {}
        wanted: list[str] = list(owned)
        gateway_port = self.settings.gateway_port
        last = gateway_port + self.settings.replicas - 1
        if gateway_port and last > 65535:
            raise StackError(
                f"HERO_GATEWAY_PORT {gateway_port} leaves no room for {self.settings.replicas} "
                f"gateways (ports {gateway_port}-{last}); choose one below "
                f"{65537 - self.settings.replicas}"
            )
        fixed = {"treasury": self.settings.treasury_port}
        for n, label in enumerate(_labels("gateway", self.settings.replicas)):
            fixed[label] = gateway_port + n if gateway_port else 0
        for name, port in fixed.items():
            if port:
                ports[name] = port
            else:
                wanted.append(name)
        ports.update(
            {
                name: previous[name]
                for name in wanted
                if name in previous and port_is_free(previous[name], host)
            }
        )
        missing = [name for name in wanted if name not in ports]
        fresh = free_ports(len(missing), host, avoid=set(ports.values()))
        ports.update(zip(missing, fresh, strict=True))
        return ports

    def _check_external(self, external: dict[ComponentName, str]) -> None:
        for name, address in external.items():
            if not _external_answers(name, address):
                raise StackError(
                    f"{name}: the external {name} at {mask_url(address)} does not answer"
                )

    # -- state -------------------------------------------------------------------------------

    def _external(self) -> dict[ComponentName, str]:
        settings = self.settings
        candidates: dict[ComponentName, str | None] = {
            "broker": settings.kafka_bootstrap,
            "valkey": settings.redis_url,
            "ray": settings.ray_address,
            "postgres": external_store(settings),
        }
        return {name: value for name, value in candidates.items() if value}

    def _attach(
        self, label: str, record: ProcessRecord, endpoints: Endpoints | None = None
    ) -> ManagedProcess:
        """The recorded process, adopted by pid to probe or stop; with ``endpoints`` also
        able to start again as ``up`` started it (:meth:`restart`)."""
        proc: ManagedProcess
        host = LOOPBACK
        name, replica = split_label(label)
        if label in RAY_WORKER_NAMES:
            name = label
        elif replica > 1 and name not in _REPLICATED:
            raise StackError(f"{self.data_dir}: unknown component {label!r} in stack.json")
        if name == "broker":
            # What was started decides, not today's HERO_BROKER: `down` stops what `up` ran.
            if record.extra.get("kind") == BROKER_KIND_KAFKA:
                proc = self._kafka(record.port)
            else:
                proc = BrokerProcess(self.data_dir, record.port, host=host)
        elif name == "valkey":
            proc = ValkeyProcess(self.data_dir, record.port, host=host)
        elif name == "ray":
            proc = RayHead(
                self.data_dir,
                record.port,
                host=host,
                health_check_period_ms=self.settings.ray_health_check_period_ms,
                health_check_failures=self.settings.ray_health_check_failures,
            )
        elif name in RAY_WORKER_NAMES:
            proc = RayWorkerNode(self.data_dir, ray_worker_name(name), None, record.port, host=host)
        elif name == "relay":
            command = json.loads(record.extra.get("command", "null"))
            proc = RelayProcess(
                self.settings,
                record.extra.get("bootstrap", ""),
                command=command,
                purge_on_refill=record.extra.get("purge_on_refill") == "true",
                replica=replica,
            )
        elif name == "agents":
            command = json.loads(record.extra.get("command", "null"))
            proc = AgentsProcess(self.settings, endpoints, command=command)
        elif name == "treasury":
            proc = TreasuryProcess(self.settings, record.port)
        elif name == "usage":
            redis_url = endpoints.redis_url if endpoints is not None else ""
            # The broker's address and the command come back from the record (adopt).
            proc = UsageProcess(self.settings, redis_url=redis_url, replica=replica)
        elif name == "commands":
            proc = CommandsProcess(self.settings)
        elif name == "gateway":
            proc = GatewayProcess(
                self.settings,
                record.port,
                endpoints.redis_url if endpoints is not None else "",
                endpoints.kafka_bootstrap if endpoints is not None else "",
                (endpoints.treasury_url or "") if endpoints is not None else "",
                replica=replica,
            )
        elif name == "postgres":
            proc = PostgresProcess(self.data_dir, record.port, host=host)
        else:
            raise StackError(f"{self.data_dir}: unknown component {label!r} in stack.json")
        proc.adopt(record)
        return proc

    def _redis_url(self, record: ProcessRecord) -> str:
        return _required(ValkeyProcess(self.data_dir, record.port, host=LOOPBACK).url)

    def _alive(self, record: ProcessRecord) -> bool:
        return self._attach(record.name, record).is_alive()

    def _split_live(self, state: StackState) -> tuple[list[str], list[str]]:
        live: list[str] = [name for name, record in state.processes.items() if self._alive(record)]
        # The worker nodes a stack runs are those it started with: `hero up --ray-nodes N` on
        # a running stack changes nothing.
        wanted = [name for name in self.components if name not in RAY_WORKER_NAMES]
        started = [name for name in RAY_WORKER_NAMES if name in state.processes]
        expected = [name for name in [*wanted, *started] if name not in state.external]
        dead: list[str] = [name for name in expected if name not in live]
        return live, dead

    def _forget(self, state: StackState) -> None:
        """Drop a state whose processes are all gone, with their leftovers (Ray's /tmp link)."""
        for name, record in state.processes.items():
            proc = self._attach(name, record)
            if not proc.is_alive():
                proc.cleanup()
        StackState.remove(self.data_dir)
        SupervisorReport.remove(self.data_dir)

    def _stop_one(self, name: str, record: ProcessRecord, failures: list[str]) -> ComponentStatus:
        proc = self._attach(name, record)
        try:
            was_running = proc.stop()
        except ComponentError as exc:
            failures.append(str(exc))
            return ComponentStatus(
                name=name, state="up", address=record.address, pid=record.pid, detail=exc.reason
            )
        detail = "stopped" if was_running else "was not running"
        return ComponentStatus(
            name=name, state="down", address=record.address, pid=record.pid, detail=detail
        )

    # -- reporting ------------------------------------------------------------------------------

    def _statuses(self, state: StackState) -> list[ComponentStatus]:
        external = self._external()
        statuses: list[ComponentStatus] = []
        for name in _with_recorded(self.components, state):
            if name in external:
                statuses.append(_external_status(name, external[name]))
            elif name in state.processes:
                statuses.append(self._owned_status(name, state.processes[name]))
            else:
                statuses.append(self._unrecorded(name, "not started"))
        return apply_supervision(statuses, state, self.settings)

    def _owned_status(self, name: str, record: ProcessRecord) -> ComponentStatus:
        proc = self._attach(name, record)
        base = {"name": name, "address": record.address, "pid": record.pid}
        if not proc.is_alive():
            return ComponentStatus(
                **base, state="down", detail=f"pid {record.pid} is gone; see {record.log}"
            )
        if not proc.is_healthy():
            return ComponentStatus(
                **base, state="down", detail=f"pid {record.pid} runs but does not answer"
            )
        detail = None
        if isinstance(proc, RelayProcess):
            detail = _relay_detail(proc)
            if "reason" in (proc.health() or {}):  # a standby that cannot reach the store
                return ComponentStatus(**base, state="degraded", detail=detail)
        elif isinstance(proc, RayWorkerNode):
            detail = proc.detail()
        elif isinstance(proc, KafkaProcess):
            detail = f"Apache Kafka {KAFKA_VERSION}, log in {proc.log_dir}"
        elif isinstance(proc, AgentsProcess):
            detail = _agents_detail(proc)
        elif isinstance(proc, TreasuryProcess):
            detail = treasury_detail(proc)
        elif isinstance(proc, UsageProcess):
            detail = usage_detail(proc)
        elif isinstance(proc, CommandsProcess):
            detail = commands_detail(proc)
        elif isinstance(proc, PostgresProcess):
            detail = f"PostgreSQL, cluster in {proc.pgdata}"
        elif isinstance(proc, GatewayProcess):
            detail = gateway_detail(proc)
            if gateway_degraded(proc):
                return ComponentStatus(**base, state="degraded", detail=detail)
        return ComponentStatus(**base, state="up", detail=detail)

    def _unrecorded(self, name: str, detail: str) -> ComponentStatus:
        external = self._external()
        if name in external:
            return ComponentStatus(
                name=name,
                state="external",
                address=mask_url(external[name]),
                detail="external: left alone",
            )
        return ComponentStatus(name=name, state="down", detail=detail)

    def _nothing_running(self, detail: str) -> list[ComponentStatus]:
        external = self._external()
        return [
            _external_status(name, external[name])
            if name in external
            else ComponentStatus(name=name, state="down", detail=detail)
            for name in self.components
        ]

    def _endpoints_or_none(self) -> Endpoints | None:
        try:
            return self.endpoints()
        except StackError:
            return None


def _external_answers(name: ComponentName, address: str) -> bool:
    if name == "broker":
        return kafka_answers(address)
    if name == "valkey":
        return redis_answers(address)
    if name == "postgres":
        return store_answers(address)
    # ray://, auto: nothing cheap to probe from here; ray.init will tell.
    return ray_gcs_answers(address) if "://" not in address and address != "auto" else True


def _external_status(name: ComponentName, address: str) -> ComponentStatus:
    answers = _external_answers(name, address)
    return ComponentStatus(
        name=name,
        state="external",
        address=mask_url(address),
        detail="answers" if answers else "does not answer",
    )


def _relay_detail(relay: RelayProcess) -> str | None:
    health = relay.health()
    if health is None:
        return None
    if health.get("role") == "standby":
        reason = health.get("reason")
        return "standby: waits on the lease" + (f" ({reason})" if reason else "")
    parts = ["active", f"position {health.get('position')}"]
    if health.get("idempotent"):
        parts.append("idempotent producer")
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)


def _agents_detail(agents: AgentsProcess) -> str | None:
    health = agents.health()
    if health is None:
        return None
    agents_count, shards = health.get("agents"), health.get("shards")
    parts = [
        f"{agents_count} agents on {shards} hosts"
        if agents_count is not None
        else f"{shards} hosts, no stats",
        "caught up" if health.get("caught_up") else "not caught up",
    ]
    by_node = health.get("hosts_by_node")
    if isinstance(by_node, dict) and by_node:
        parts.append(
            "hosts per Ray node: " + "; ".join(_on_node(n, by_node[n]) for n in sorted(by_node))
        )
    if health.get("bad_records"):
        parts.append(f"{health['bad_records']} unreadable records skipped")
    if health.get("error"):
        parts.append(f"error: {health['error']}")
    updated = health.get("updated_at")
    if isinstance(updated, str):
        parts.append(f"updated {updated}")
    return ", ".join(parts)


def _labels(name: str, replicas: int) -> list[str]:
    return [replica_label(name, n) for n in range(1, replicas + 1)]


def _with_recorded(components: tuple[str, ...], state: StackState) -> list[str]:
    """``components`` and any replica stack.json records beyond them (a stack started with
    more replicas than today's HERO_REPLICAS still shows, and stops, whole), each replica
    next to its first."""
    names = [*components, *(name for name in state.processes if name not in components)]
    kinds = [split_label(name)[0] for name in components]

    def place(label: str) -> tuple[int, int]:
        kind, replica = split_label(label)
        return (kinds.index(kind) if kind in kinds else len(kinds), replica)

    return sorted(names, key=place)


def is_dependency(label: str) -> bool:
    """The servers the others need (store, broker, Valkey, Ray and its nodes): while one is
    down, starting a process after it only crashes that again."""
    return label in ("postgres", "broker", "valkey", "ray", *RAY_WORKER_NAMES)


def restart_order(labels: Iterable[str]) -> list[str]:
    """``labels`` with their dependencies first: the store, the broker, Valkey, Ray and its
    nodes, then HERO's processes; a kind this list does not know (one added later) last,
    after everything it may need."""
    order = [*reversed(_STOP_ORDER[_STOP_ORDER.index("ray") :]), *RAY_WORKER_NAMES]
    order += [name for name in reversed(_STOP_ORDER) if name not in order]

    def rank(label: str) -> tuple[int, int]:
        kind, replica = split_label(label)
        kind = label if label in RAY_WORKER_NAMES else kind
        return (order.index(kind) if kind in order else len(order), replica)

    return sorted(labels, key=rank)


def _stop_sequence(state: StackState) -> list[str]:
    """The recorded processes in _STOP_ORDER, each component's replicas before its first."""
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for label in state.processes:
        name, replica = split_label(label)
        by_kind.setdefault(name, []).append((replica, label))
    return [
        label for name in _STOP_ORDER for _, label in sorted(by_kind.get(name, []), reverse=True)
    ]


def _gateway_urls(state: StackState | None) -> list[str]:
    if state is None:
        return []
    found = [
        (split_label(label)[1], label)
        for label in state.processes
        if split_label(label)[0] == "gateway"
    ]
    urls = (_url_of_record(state, label) for _, label in sorted(found))
    return [url for url in urls if url is not None]


def _on_node(node: object, shards: object) -> str:
    listed = ", ".join(str(s) for s in shards) if isinstance(shards, list) else str(shards)
    return f"{node or '?'} [{listed}]"


def _url_of_record(state: StackState | None, name: str) -> str | None:
    record = state.processes.get(name) if state is not None else None
    return reachable_url(record.address) if record is not None and record.address else None


def _url_of(valkey: ManagedProcess | None) -> str | None:
    return valkey.url if isinstance(valkey, ValkeyProcess) else None


def _address(records: dict[str, ProcessRecord], name: str) -> str:
    return _required(records[name].address)


def _required(value: str | None) -> str:
    if value is None:
        raise StackError("internal: a started component has no address")
    return value


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise StackError("hero up took longer than HERO_UP_TIMEOUT_S")
    return left


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
