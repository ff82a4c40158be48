"""Local TCP ports: pick free ones, probe them, wait for listeners."""

from __future__ import annotations

import contextlib
import socket
import time

__all__ = ["free_ports", "port_frees", "port_is_free", "split_host_port", "tcp_answers"]


def free_ports(count: int, host: str = "127.0.0.1", *, avoid: set[int] | None = None) -> list[int]:
    """``count`` distinct ports the kernel considers free on ``host`` right now.

    The sockets stay open until all are chosen, so the ports differ from each other; another
    program may still take one before we bind it, which the caller reports as a clear error.
    """
    avoid = avoid or set()
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in avoid and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``host:port`` (with SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Lingering TIME_WAIT sockets from a killed server do not block a restart on the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_frees(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> bool:
    """Whether ``host:port`` can be bound within ``timeout_s``. A client still retrying a
    server that was just killed may, on Linux, connect to itself from that very port (a local
    port in the ephemeral range); such a connection fails and goes within moments."""
    deadline = time.monotonic() + timeout_s
    while not port_is_free(port, host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``host:port`` (optionally ``scheme://host:port/...``) into its parts."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = rest.rpartition(":")
        if not host:
            host, port = rest, ""
    return host or "127.0.0.1", int(port) if port.isdigit() else default_port
