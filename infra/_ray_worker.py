"""``python -m infra._ray_worker ARGS``: ``ray start ARGS`` for a worker node on loopback.

Ray refuses to start a worker node while ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (the switch
that keeps the head and its clients on 127.0.0.1, see infra.ray_client), and with the switch
on it rewrites a loopback head address into the machine's outward IP, where the head does not
listen. So the worker node runs with the switch on, and this keeps a loopback head address as
it is; everything else is Ray's own ``ray start``.
"""

from __future__ import annotations

import sys

from ray._private import services
from ray.scripts import scripts

_resolve = services.resolve_ip_for_localhost


def _keep_loopback(host: str) -> str:
    return host if host in ("127.0.0.1", "localhost", "::1") else str(_resolve(host))


if __name__ == "__main__":
    services.resolve_ip_for_localhost = _keep_loopback
    sys.argv = ["ray", *sys.argv[1:]]
    scripts.main()  # type: ignore[no-untyped-call]
