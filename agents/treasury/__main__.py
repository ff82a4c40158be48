"""``python -m agents.treasury [--port N] [--interval S]``: the webhook and the worker.

Reads the HERO_* settings. Serves ``POST /webhooks/payments`` on 127.0.0.1 only (the gateway
forwards providers' webhooks to it) and converts and bills every ``--interval`` seconds;
writes ``run/treasury.health`` (pid, port, last pass) once listening and then every 2 s.
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import logging
import threading

import uvicorn

from agents.treasury.app import create_app
from agents.treasury.runtime import TreasuryWorker, health_path, webhook_secret, write_health
from hero.config import LOOPBACK, HeroSettings
from hero.store import open_snapshots, open_store
from infra.ports import free_ports

HEALTH_EVERY_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=None, help="default HERO_TREASURY_PORT")
    parser.add_argument("--interval", type=float, default=None, help="seconds between passes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = HeroSettings()
    if args.interval is not None:
        settings = settings.model_copy(update={"treasury_interval_s": args.interval})
    port = args.port if args.port is not None else settings.treasury_port
    port = port or free_ports(1, LOOPBACK)[0]
    url = settings.effective_store_url
    worker = TreasuryWorker(open_store(url), settings, snapshots=open_snapshots(url))
    app = create_app(
        worker.treasury,
        webhook_secret(settings),
        worker.clock,
        tolerance_s=settings.webhook_tolerance_s,
        status=worker.status,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="off")
    )
    stopped = threading.Event()

    def report_health() -> None:
        while not stopped.is_set():
            if server.started:
                write_health(health_path(settings), port, worker)
            stopped.wait(HEALTH_EVERY_S if server.started else 0.05)

    worker.start()
    threading.Thread(target=report_health, name="treasury-health", daemon=True).start()
    try:
        server.run()
    finally:
        stopped.set()
        worker.stop()
        health_path(settings).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
