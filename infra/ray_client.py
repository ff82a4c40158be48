"""What a Ray client needs to reach the embedded, loopback-only Ray head.

Ray rewrites a loopback address (``ray.init(address="127.0.0.1:P")``) into the machine's
outward IP unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` -- the switch Ray uses on laptops to
stay on 127.0.0.1. The head is started with it so every Ray server binds 127.0.0.1 only, and a
client must set it too or it dials an address nothing listens on. ``RAY_AUTH_MODE=disabled``
keeps Ray from looking for, or writing, a token under ``~/.ray``.
"""

from __future__ import annotations

import ipaddress
import os
import sys

__all__ = ["configure_ray_client", "is_loopback", "ray_env_for_host"]

_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ray_env_for_host(host: str) -> dict[str, str]:
    """Environment for Ray processes (head and clients) of a head bound to ``host``."""
    env = {"RAY_AUTH_MODE": "disabled"}
    if is_loopback(host):
        env[_LOCAL_ONLY] = "0"
    return env


def configure_ray_client(ray_env: dict[str, str]) -> None:
    """Apply ``Endpoints.ray_env`` to this process before ``ray.init(address=...)``.

    Child processes inherit it through os.environ. Ray reads the switch when
    ``ray._private.ray_constants`` is imported, so if Ray is already imported the module
    attribute is updated as well (services.py reads it at call time).
    """
    os.environ.update(ray_env)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and _LOCAL_ONLY in ray_env:
        enabled = ray_env[_LOCAL_ONLY].lower() in ("1", "true")
        vars(constants)["ENABLE_RAY_CLUSTER"] = enabled
