"""The stop signal of a long-running process (relay, usage worker): SIGTERM or SIGINT sets
an event its loops wait on, so they finish what they hold and leave cleanly."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["stop_on_signals"]


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT; call it inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
