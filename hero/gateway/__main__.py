"""``python -m hero.gateway [--port N]``: the gateway (REST, streams) and its read models.

Reads the HERO_* settings (``HERO_REDIS_URL`` is needed: the read models and the API keys
live in Valkey). Serves on ``HERO_GATEWAY_HOST`` (else ``HERO_HOST``, 127.0.0.1) and writes
``run/gateway.health`` (pid, port, its /health status and reasons) once listening and then
every 2 s; ``--name gateway-2`` (a second replica, ``hero up --replicas 2``) writes
``run/gateway-2.health`` instead. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from redis.asyncio import Redis

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway.app import create_app
from hero.gateway.context import GatewayContext
from hero.readmodels.projector import model_snapshots
from hero.store import SnapshotCadence, open_snapshots, open_store
from infra.ports import free_ports

HEALTH_EVERY_S = 2.0
HEALTH_FILE = "gateway.health"
_NAME = re.compile(r"gateway(-[2-8])?")


def health_path(settings: HeroSettings, name: str = "gateway") -> Path:
    """``run/gateway.health``, or ``run/gateway-2.health`` ... for another replica."""
    return settings.data_dir / "run" / f"{name}.health"


def replica_name(text: str) -> str:
    """``gateway`` or ``gateway-2`` .. ``gateway-8`` (the whole string), else an error."""
    if _NAME.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"--name must be gateway or gateway-2..8, got {text!r}")
    return text


def own_health(host: str, port: int) -> dict[str, Any]:
    """The gateway's own ``/health`` answer (status and reasons), for ``hero status``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as answer:
            found = json.loads(answer.read())
    except (OSError, ValueError):
        return {"status": "degraded", "reasons": ["/health does not answer"]}
    return {"status": found.get("status"), "reasons": found.get("reasons", [])}


def write_health(path: Path, port: int, context: GatewayContext) -> None:
    projector = context.extras.get("projector")
    body = {
        "pid": os.getpid(),
        "port": port,
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "projections": len(projector.names) if projector is not None else 0,
        **own_health(context.settings.host, port),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=None, help="default HERO_GATEWAY_PORT")
    parser.add_argument(
        "--name", type=replica_name, default="gateway", help="this replica (its health file)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = HeroSettings()
    if not settings.redis_url:
        raise SystemExit("HERO_REDIS_URL is not set: the gateway keeps its read models in Valkey")
    port = args.port if args.port is not None else settings.gateway_port
    port = port or free_ports(1, settings.gateway_bind)[0]
    store = open_store(settings.effective_store_url)
    redis = Redis.from_url(settings.redis_url)
    context = GatewayContext(settings=settings, store=store, redis=redis, clock=SystemClock())
    snapshots = open_snapshots(settings.effective_store_url)
    cadence = SnapshotCadence(settings.snapshot_every_events, settings.snapshot_every_s)
    context.extras["snapshots"] = model_snapshots(snapshots, cadence)
    app = create_app(context)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.gateway_bind,
            port=port,
            log_level="warning",
            lifespan="on",
            # Open event streams never end by themselves: give them a moment, then close.
            timeout_graceful_shutdown=3,
        )
    )
    stopped = threading.Event()

    def report_health() -> None:
        while not stopped.is_set():
            if server.started:
                write_health(health_path(settings, args.name), port, context)
            stopped.wait(HEALTH_EVERY_S if server.started else 0.05)

    threading.Thread(target=report_health, name="gateway-health", daemon=True).start()
    try:
        server.run()
    finally:
        stopped.set()
        health_path(settings, args.name).unlink(missing_ok=True)
        snapshots.close()
        store.close()


if __name__ == "__main__":
    main()
