"""Health probes: does a broker, a Valkey or a Ray GCS answer at an address?"""

from __future__ import annotations

import asyncio
import contextlib

import redis
from aiokafka.admin import AIOKafkaAdminClient

from infra._sync import run_sync
from infra.ports import split_host_port, tcp_answers

__all__ = ["kafka_answers", "ray_gcs_answers", "redis_answers"]

_KAFKA_PORT = 9092
_RAY_GCS_PORT = 6379


def kafka_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """A TCP connect, then a metadata round trip (``list_topics``) through the admin client."""
    hosts = [split_host_port(item.strip(), _KAFKA_PORT) for item in bootstrap.split(",")]
    if not any(tcp_answers(host, port, timeout=min(timeout, 0.5)) for host, port in hosts):
        return False
    return run_sync(lambda: _list_topics(bootstrap, limit_s=timeout))


async def _list_topics(bootstrap: str, *, limit_s: float) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(int(limit_s * 1000), 1000)
    )
    try:
        async with asyncio.timeout(limit_s):
            await admin.start()
            await admin.list_topics()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def ray_gcs_answers(address: str, timeout: float = 0.5) -> bool:
    """The GCS port accepts connections (``ray://`` and ``auto`` cannot be probed: False)."""
    if address in ("auto", "local"):
        return False
    host, port = split_host_port(address, _RAY_GCS_PORT)
    return tcp_answers(host, port, timeout=timeout)
