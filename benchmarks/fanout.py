"""Gateway fan-out: events/s delivered to concurrent SSE subscribers, and memory per subscriber.

    ./run bench-fanout [--events 5000] [--subscribers 100] [--live N] [--live-rate R]
                       [--live-seconds 15] [--client-procs 1] [--queue-limit 1000]

In a temp dir, fills a SQLite store of its own with --events market events on the
``hero.reservations`` topic (FarmRegistered and NodeRegistered from ``MarketService``
commands, ContractCreated, one stream per farm and per contract; group commits of 1,000),
then serves the gateway's streams router (``hero.gateway.streams.router``, with its shared
``Broadcaster``) under uvicorn on 127.0.0.1 in a subprocess -- the caller dependency is
overridden with an admin principal, so no Valkey and no key lookup. Measured, in the same run:

* the raw consume rate: one reader doing ``recorded_after(store, 0, 500)`` over the events
  (500: the broadcaster's read batch), and the same with each row's JSON parsed as the
  broadcaster does; then one SSE subscriber alone (which also warms the server up);
* --subscribers SSE subscribers at once (httpx, raw bytes, in --client-procs processes of
  ``benchmarks/_fanout_client.py``), all from ``start=earliest``: the time until every one has
  every event; events delivered/s in all, per subscriber, p50/p99 of the completion times;
  the CPU seconds the server and the clients spent (whichever is near its wall time is the
  bottleneck);
* live: with every subscriber caught up, --live more events appended at --live-rate per
  second (by default half the per-subscriber rate of the catch-up, for --live-seconds); the
  latency from each event's ``recorded_at`` to its receipt, p50/p99;
* memory: the server's RSS (/proc) with 0 subscribers, with --subscribers connected from
  ``latest`` and idle (no catch-up), at its peak, idle after the catch-up and after they
  left; per subscriber: (idle - 0) / subscribers; the bound of a live queue (--queue-limit x
  the mean parsed event size) and the broadcaster's ``max_queue_depth`` and
  ``slow_consumer_drops``.

The default of 5,000 events keeps the run near 2 minutes on 2 CPUs: every delivery costs the
server ~100+ us of CPU, so 100 x 20,000 takes ~5 minutes (``--events 20000``).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx

from agents.runtime.memory import deep_size
from hero.gateway.broadcast import LogItem
from hero.market.service import MarketService
from hero.store import ANY_VERSION, NewEvent, SqliteEventStore, recorded_after
from infra.ports import free_ports
from schemas import ContractCreated, Money, RegisterFarm, RegisterNode, Resources, Sla, Topic

TOPIC = Topic.RESERVATIONS.value
READ_BATCH = 500  # the Broadcaster's read_batch
HERE = Path(__file__).resolve().parent
NODE = Resources.from_gb(cru=64, mru_gb=256, sru_gb=4000)
REPLICA = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50)


# -- the events -----------------------------------------------------------------------------


def append_event(service: MarketService, store: SqliteEventStore, i: int) -> None:
    """Event ``i`` of the mix: farm ``i // 3`` registered, its node, then a contract on it."""
    farm = f"bench-farm-{i // 3:06d}"
    kind = i % 3
    if kind == 0:
        command: RegisterFarm | RegisterNode = RegisterFarm(
            command_id=f"{farm}:reg", farm_id=farm, name=farm, grid="grid4", country="DE",
            region="europe",
        )  # fmt: skip
        service.handle(command, actor="bench")
    elif kind == 1:
        command = RegisterNode(
            command_id=f"{farm}:node", node_id=f"{farm}-n1", farm_id=farm, grid="grid4",
            country="DE", region="europe", total=NODE, uptime_pct=Decimal("99.9"),
        )  # fmt: skip
        service.handle(command, actor="bench")
    else:
        now = datetime.now(UTC)
        contract = ContractCreated(
            contract_id=f"bench-ctr-{i:06d}", negotiation_id=f"bench-nego-{i:06d}",
            offer_id=f"bench-offer-{i:06d}", hold_id=f"bench-hold-{i:06d}",
            offtaker_id="bench-offtaker", workload_id=f"bench-wl-{i:06d}", farm_id=farm,
            node_id=f"{farm}-n1", grid="grid4", resources=REPLICA,
            price_hour=Money.of("0.05", "USD"), term_hours=720,
            sla=Sla(uptime_pct=Decimal(99)), starts_at=now,
        )  # fmt: skip
        event = NewEvent.of(contract, actor="bench", occurred_at=now)
        store.append(f"contract-{contract.contract_id}", ANY_VERSION, [event], f"{i}:ctr")


def fill(store: SqliteEventStore, count: int) -> float:
    service = MarketService(store)
    started = time.perf_counter()
    for first in range(0, count, 1000):
        with store.group_commit():
            for i in range(first, min(first + 1000, count)):
                append_event(service, store, i)
    return time.perf_counter() - started


def append_paced(store: SqliteEventStore, first: int, count: int, rate: float) -> float:
    """Events ``first ..`` appended at ``rate`` per second (what is due, every 10 ms, in one
    group commit); returns the rate achieved."""
    service = MarketService(store)
    started, sent = time.perf_counter(), 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate) + 1)
        with store.group_commit():
            for i in range(first + sent, first + due):
                append_event(service, store, i)
        sent = max(sent, due)
        time.sleep(0.01)
    return count / (time.perf_counter() - started)


# -- the baseline ---------------------------------------------------------------------------


def raw_consume(path: Path, parse: bool) -> float:
    """Rows/s of one reader following the store from its start (``parse``: as LogItems)."""
    store = SqliteEventStore(path)
    try:
        started, rows = time.perf_counter(), 0
        for row in recorded_after(store, 0, READ_BATCH):
            if parse:
                LogItem.of(row)
            rows += 1
        return rows / (time.perf_counter() - started)
    finally:
        store.close()


def event_sizes(path: Path) -> tuple[float, float]:
    """Mean bytes of an event: its JSON, and its parsed LogItem (what a live queue holds)."""
    store = SqliteEventStore(path)
    try:
        rows = store.read_all(1, 300)
        json_bytes = statistics.mean(len(row.envelope_json.encode()) for row in rows)
        parsed = statistics.mean(deep_size(LogItem.of(row)) for row in rows)
        return json_bytes, parsed
    finally:
        store.close()


# -- the server (a subprocess: ``fanout.py --serve DB PORT QUEUE_LIMIT``) ----------------------


def serve(db: str, port: int, queue_limit: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    from hero.config import HeroSettings
    from hero.domain.clock import SystemClock
    from hero.gateway import streams
    from hero.gateway.auth import caller
    from hero.gateway.context import GatewayContext, Principal, Role

    store = SqliteEventStore(db)
    # one key for every subscriber: no cap on its streams
    options = streams.StreamOptions(queue_limit=queue_limit, max_streams_per_key=0)
    context = GatewayContext(
        settings=HeroSettings(data_dir=Path(db).parent),
        store=store,
        redis=cast(Any, None),  # the streams use the store only
        clock=SystemClock(),
        extras={"stream_options": options},
    )
    app = FastAPI()
    app.include_router(streams.router(context))
    admin = Principal(key_id="bench", role=Role.ADMIN)
    app.dependency_overrides[caller] = lambda: admin

    @app.get("/bench/stats")
    async def stats() -> dict[str, Any]:
        return asdict(streams.broadcaster_for(context).stats)

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    try:
        uvicorn.Server(config).run()
    finally:
        streams.broadcaster_for(context).close()
        store.close()


class Server:
    def __init__(self, db: Path, queue_limit: int):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(db), str(self.port), str(queue_limit)]
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/bench/stats", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the gateway did not start") from None
                time.sleep(0.1)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/bench/stats", timeout=10).json()
        return result

    def status(self, field: str) -> int:
        """A ``/proc/PID/status`` figure (VmRSS, VmHWM) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- the subscribers ------------------------------------------------------------------------


class Clients:
    """``procs`` client processes holding ``subscribers`` SSE subscribers between them."""

    def __init__(
        self, url: str, subscribers: int, procs: int, history_end: int, start: str = "earliest"
    ):
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.processes = []
        procs = max(1, min(procs, subscribers))
        for n in range(procs):
            share = subscribers // procs + (1 if n < subscribers % procs else 0)
            command = [sys.executable, str(HERE / "_fanout_client.py"), url, TOPIC]
            command += ["--subscribers", str(share), "--history-end", str(history_end)]
            command += ["--start", start]
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            threading.Thread(target=self._read, args=(process,), daemon=True).start()
            self.processes.append(process)

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.messages.put(json.loads(line))
        self.messages.put({"event": "exited", "code": process.wait()})

    def wait(self, event: str, timeout_s: float) -> list[dict[str, Any]]:
        """One ``event`` message from every process."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < len(self.processes):
            left = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise TimeoutError(f"timed out waiting for the clients: {event}") from None
            if message["event"] == "exited":
                raise RuntimeError(f"a client process exited early ({message['code']})")
            if message["event"] == event:
                got.append(message)
        return got

    def send(self, line: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(line + "\n")
            process.stdin.flush()

    def go(self) -> None:
        self.wait("ready", 60)
        self.send("go")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
            process.wait(10)


def wait_for(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the gateway")
        time.sleep(0.1)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument(
        "--live", type=int, default=0, help="events appended once caught up (0: --live-seconds)"
    )
    parser.add_argument(
        "--live-rate",
        type=float,
        default=0,
        help="live events per second (0: half the per-subscriber rate of the catch-up)",
    )
    parser.add_argument("--live-seconds", type=float, default=15, help="for the --live default")
    parser.add_argument("--client-procs", type=int, default=1, help="processes of subscribers")
    parser.add_argument("--queue-limit", type=int, default=1000, help="StreamOptions.queue_limit")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    if min(args.events, args.subscribers, args.client_procs, args.queue_limit) < 1:
        parser.error("--events, --subscribers, --client-procs, --queue-limit: >= 1")
    if min(args.live, args.live_rate) < 0 or args.live_seconds <= 0:
        parser.error("--live and --live-rate must be >= 0, --live-seconds positive")

    with tempfile.TemporaryDirectory(prefix="hero-fanout-") as tmp:
        db = Path(tmp) / "events.db"
        store = SqliteEventStore(db)
        fill_s = fill(store, args.events)
        history_end = store.current_position()
        raw = raw_consume(db, parse=False)
        parsed = raw_consume(db, parse=True)
        json_bytes, item_bytes = event_sizes(db)

        server = Server(db, args.queue_limit)
        try:
            # one subscriber alone: the per-subscriber baseline, and the server's warm-up
            alone = Clients(server.url, 1, 1, history_end)
            alone.go()
            single = alone.wait("caught_up", args.timeout)[0]
            alone.send("0")
            alone.stop()
            time.sleep(1.0)
            rss_empty = server.status("VmRSS")
            # memory: as many subscribers from ``latest``, connected and idle (no catch-up)
            idle = Clients(server.url, args.subscribers, args.client_procs, history_end, "latest")
            idle.go()
            idle.wait("caught_up", args.timeout)
            wait_for(lambda: server.stats()["live"] >= args.subscribers, args.timeout)
            time.sleep(1.0)
            rss_latest = server.status("VmRSS")
            idle.send("0")
            idle.stop()
            wait_for(lambda: server.stats()["subscribers"] == 0, args.timeout)

            clients = Clients(server.url, args.subscribers, args.client_procs, history_end)
            try:
                server_cpu = server.cpu_s()
                clients.go()
                caught = clients.wait("caught_up", args.timeout)
                server_cpu = server.cpu_s() - server_cpu
                time.sleep(1.0)  # idle: every subscriber caught up, waiting on its queue
                rss_idle = server.status("VmRSS")
                rss_peak = server.status("VmHWM")
                during = server.stats()
                wall = max(s for message in caught for s in message["seconds"])
                # live: half the rate every subscriber was served at, unless told
                live_rate = args.live_rate or round(history_end / wall / 2, 1)
                live_count = args.live or max(100, round(live_rate * args.live_seconds))
                clients.send(str(live_count))
                live_cpu = server.cpu_s()
                appended_rate = append_paced(store, args.events, live_count, live_rate)
                live = clients.wait("live", args.timeout)
                live_cpu = server.cpu_s() - live_cpu
            finally:
                clients.stop()
            time.sleep(1.0)
            rss_after = server.status("VmRSS")
            after = server.stats()
        finally:
            server.stop()
            store.close()

    n, k = history_end, args.subscribers
    seconds = [s for message in caught for s in message["seconds"]]
    wall = max(seconds)
    delivered = sum(message["events"] for message in caught)
    gaps = sum(m["gaps"] for m in caught + live)
    reconnects = sum(m["reconnects"] for m in caught + live)
    client_cpu = sum(message["cpu_s"] for message in caught)
    latencies = [ms for message in live for ms in message["latencies_ms"]]
    per_sub = n / wall
    single_rate = n / single["seconds"][0]

    print(
        f"store: {n:,} events on {TOPIC} (mean {json_bytes:,.0f} B of JSON, {item_bytes:,.0f} B "
        f"parsed), filled in {fill_s:.1f} s; queue limit {args.queue_limit}"
    )
    print(f"raw consume, recorded_after(store, 0, 500):   {raw:>10,.0f} events/s")
    print(f"  with each row parsed (LogItem.of):           {parsed:>10,.0f} events/s")
    print(
        f"one SSE subscriber alone:                     {single_rate:>10,.0f} events/s "
        f"({single['seconds'][0]:.2f} s)"
    )
    print(
        f"{k} SSE subscribers from earliest ({len(caught)} client process(es)): all "
        f"{n:,} events at every subscriber in {wall:.2f} s"
    )
    print(f"  delivered in all:                           {delivered / wall:>10,.0f} events/s")
    print(
        f"  per subscriber:                             {per_sub:>10,.0f} events/s "
        f"(completion p50 {_quantile(seconds, 0.5):.2f} s, p99 {_quantile(seconds, 0.99):.2f} s)"
    )
    print(
        f"  CPU: server {server_cpu:.1f} s, clients {client_cpu:.1f} s in {wall:.1f} s of wall "
        f"time ({os.cpu_count()} CPUs)"
    )
    print(
        f"  ratio per-subscriber/raw consume: {per_sub / raw:.3g}; per-subscriber/one "
        f"subscriber alone: {per_sub / single_rate:.3g}; delivered in all/raw: "
        f"{delivered / wall / raw:.3g}"
    )
    print(
        f"live: {live_count:,} events appended at {appended_rate:,.0f}/s to {k} caught-up "
        f"subscribers: recorded_at -> receipt p50 {_quantile(latencies, 0.5):,.0f} ms, "
        f"p99 {_quantile(latencies, 0.99):,.0f} ms, max {max(latencies):,.0f} ms "
        f"(server CPU {live_cpu:.1f} s; the broadcaster polls every 100 ms)"
    )
    print(
        f"correctness: {gaps} gaps, {reconnects} reconnects; every subscriber got all "
        f"{n + live_count:,} events"
    )
    print(
        f"server RSS: {_mib(rss_empty)} with 0 subscribers; {_mib(rss_latest)} with {k} "
        f"connected from latest and idle; {_mib(rss_idle)} with {k} idle after catching up "
        f"(peak {_mib(rss_peak)}); {_mib(rss_after)} after they left"
    )
    print(
        f"  memory held per idle subscriber: {(rss_latest - rss_empty) / k / 1024:,.1f} KiB "
        f"(connected from latest); {(rss_idle - rss_empty) / k / 1024:,.1f} KiB after a "
        f"catch-up (RSS keeps the catch-up's peak: each subscriber catching up holds a read "
        f"batch of {READ_BATCH} parsed events, {READ_BATCH} x {item_bytes:,.0f} B = "
        f"{_mib(READ_BATCH * item_bytes)})"
    )
    bound = args.queue_limit * (item_bytes + 8)
    print(
        f"  worst-case live queue per subscriber: {args.queue_limit} x {item_bytes:,.0f} B "
        f"(+ 8 B of pointer) = {bound / 2**20:,.2f} MiB (the items are shared: this is the "
        f"bound when that subscriber alone still holds them); x {k} = {_mib(bound * k)}"
    )
    print(
        f"broadcaster: max_queue_depth {after['max_queue_depth']} (limit "
        f"{args.queue_limit}), slow_consumer_drops {after['slow_consumer_drops']}, "
        f"catch_up_restarts {after['catch_up_restarts']}, live subscribers when idle "
        f"{during['live']}, subscribed_total {after['subscribed_total']}"
    )
    if gaps or delivered != n * k:
        sys.exit(f"error: {gaps} gaps, {delivered:,} events delivered, {n * k:,} expected")


if __name__ == "__main__":
    main()
