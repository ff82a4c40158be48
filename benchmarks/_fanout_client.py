"""SSE subscribers for ``benchmarks/fanout.py``, in a process of their own.

    python benchmarks/_fanout_client.py URL TOPIC --subscribers K --history-end P [--start S]

Talks JSON lines on stdout, takes lines on stdin: says ``ready`` once imported; on ``go``
opens K streams (``start=earliest``) at once and says ``caught_up`` when every one has
received position P (each subscriber's seconds since ``go``, this process's CPU seconds;
with ``--start latest``: when each is connected);
then reads a count M and, if it is not 0, says ``live`` once each has received P + M too:
the latency of every live event from its ``recorded_at`` to its receipt here (ms).

The events are read as raw bytes and only each message's ``id:`` and its envelope's
``recorded_at`` are picked out (one regular expression; ``recorded_at`` is parsed only for
live events), so the gateway, not this parser, is what is measured. A position that is not
the one after the previous one counts as a gap (every event of the benchmark's store is on
the topic). A slow-consumer close is reconnected with ``Last-Event-ID`` and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from datetime import datetime
from typing import Any, cast

import httpx

#: An event message (the HTTP chunk framing around it never matches): its id and recorded_at.
_FRAME = re.compile(rb'id: (\d+)\nevent: [^\n]*\ndata: \{[^\n]*?"recorded_at":"([^"]+)"')


class Subscriber:
    def __init__(self, history_end: int, start: str):
        self.history_end, self.start = history_end, start
        self.live_end: int | None = None
        self.position = 0
        self.events = 0
        self.gaps = 0
        self.reconnects = 0
        self.caught_up_at: float | None = None
        self.latencies_ms: list[float] = []
        self.caught_up = asyncio.Event()
        self.finished = asyncio.Event()

    def frame(self, position: int, recorded_at: bytes, now: float) -> None:
        if position <= self.position:
            return  # a replay after a reconnect
        if position != self.position + 1:
            self.gaps += 1
        self.position = position
        self.events += 1
        if position > self.history_end:
            recorded = datetime.fromisoformat(recorded_at.decode()).timestamp()
            self.latencies_ms.append((now - recorded) * 1000)
        if position >= self.history_end and self.caught_up_at is None:
            self.caught_up_at = now
            self.caught_up.set()
        if self.live_end is not None and position >= self.live_end:
            self.finished.set()

    async def run(self, http: httpx.AsyncClient, url: str) -> None:
        while not self.finished.is_set():
            headers = {"Last-Event-ID": str(self.position)} if self.position else {}
            try:
                async with http.stream(
                    "GET", url, params={"start": self.start}, headers=headers
                ) as response:
                    response.raise_for_status()
                    buffer = b""
                    async for chunk in response.aiter_raw():
                        if self.start == "latest":
                            self.caught_up.set()  # connected: the position marker came
                        buffer += chunk
                        end = buffer.rfind(b"\n\n")  # the end of the last whole message
                        if end < 0:
                            continue
                        now = time.time()
                        for match in _FRAME.finditer(buffer, 0, end):
                            self.frame(int(match[1]), match[2], now)
                        if buffer.find(b"event: close", 0, end) >= 0:
                            raise ConnectionResetError("closed by the gateway: slow consumer")
                        buffer = buffer[end + 2 :]
                        if self.finished.is_set():
                            return
            except (httpx.TransportError, ConnectionResetError):
                self.reconnects += 1
                await asyncio.sleep(0.1)  # a backoff before the reconnect


async def until(events: list[asyncio.Event], tasks: list[asyncio.Task[None]]) -> None:
    """Until every event is set; a subscriber's failure is raised."""
    waiter = asyncio.gather(*(event.wait() for event in events))
    pending: set[asyncio.Future[Any]] = {waiter, *tasks}
    while not waiter.done():
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                waiter.cancel()
                raise cast(BaseException, task.exception())


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("topic")
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--history-end", type=int, required=True)
    parser.add_argument("--start", choices=["earliest", "latest"], default="earliest")
    args = parser.parse_args()
    url = f"{args.url}/v1/streams/{args.topic}"
    subs = [Subscriber(args.history_end, args.start) for _ in range(args.subscribers)]
    limits = httpx.Limits(max_connections=args.subscribers + 1, max_keepalive_connections=0)
    timeout = httpx.Timeout(30.0, read=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        say(event="ready")
        await asyncio.to_thread(sys.stdin.readline)  # "go"
        started, cpu = time.time(), time.process_time()
        tasks = [asyncio.create_task(sub.run(http, url)) for sub in subs]
        await until([sub.caught_up for sub in subs], tasks)
        say(
            event="caught_up",
            seconds=[(sub.caught_up_at or 0.0) - started for sub in subs],
            cpu_s=time.process_time() - cpu,
            events=sum(sub.events for sub in subs),
            gaps=sum(sub.gaps for sub in subs),
            reconnects=sum(sub.reconnects for sub in subs),
        )
        live = int(await asyncio.to_thread(sys.stdin.readline) or 0)
        for sub in subs:
            sub.live_end = args.history_end + live
            if sub.position >= sub.live_end:
                sub.finished.set()
        if live:
            cpu = time.process_time()
            await until([sub.finished for sub in subs], tasks)
            say(
                event="live",
                latencies_ms=[round(ms, 2) for sub in subs for ms in sub.latencies_ms],
                cpu_s=time.process_time() - cpu,
                events=sum(sub.events for sub in subs),
                gaps=sum(sub.gaps for sub in subs),
                reconnects=sum(sub.reconnects for sub in subs),
            )
        for sub in subs:
            sub.finished.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
