"""Usage windows in Valkey: a batch added in one call leaves the outcomes and the state that
adding its samples one by one (the per-sample script the batch script replaced) leaves.

Against the session stack's Valkey (shared with other tests): every window set here lives
under a namespace of this test's own, removed afterwards.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from hero.readmodels.usage import ADDED, DUPLICATE, LATE, UsageWindows
from schemas import UtilizationSampled, new_id

pytestmark = pytest.mark.integration

HOUR0 = datetime(2026, 11, 23, 10, tzinfo=UTC)

# The per-sample script, as it was before batches (the reference the batch script must match).
# KEYS: sums hash, seen set, open zset, closed marker, watermarks hash
# ARGV: sample id, seconds, bytes, open member, hour epoch, partition, sample epoch
REFERENCE_ADD = """
local mark = tonumber(redis.call('HGET', KEYS[5], ARGV[6]) or '0')
if tonumber(ARGV[7]) > mark then redis.call('HSET', KEYS[5], ARGV[6], ARGV[7]) end
if redis.call('EXISTS', KEYS[4]) == 1 then return 2 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'seconds', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'bytes', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'samples', 1)
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
return 1
"""


class Reference:
    """``UsageWindows.add`` as it was: one script call per sample (pipelined: the calls still
    run one by one, in order, each as a whole)."""

    def __init__(self, redis: Redis, name: str):
        self.redis = redis
        self.prefix = f"hero:usage:{name}"
        self.script: Any = redis.register_script(REFERENCE_ADD)

    async def add_each(self, samples: Sequence[tuple[UtilizationSampled, int]]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sample, partition in samples:
                hour = sample.sampled_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
                epoch = int(hour.timestamp())
                window = f"{self.prefix}:{sample.contract_id}:{epoch}"
                keys = [f"{window}:sums", f"{window}:seen", f"{self.prefix}:open"]
                await self.script(
                    keys=[*keys, f"{window}:closed", f"{self.prefix}:watermarks"],
                    args=[
                        sample.sample_id,
                        sample.interval_s,
                        sample.network_bytes,
                        f"{epoch}|{sample.contract_id}",
                        epoch,
                        partition,
                        int(sample.sampled_at.timestamp()),
                    ],
                    client=pipe,
                )
            return [int(result) for result in await pipe.execute()]


@pytest.fixture
async def ns(redis: Redis) -> AsyncIterator[Callable[[str], str]]:
    """Names a namespace of this test's own (``ns("batch")``); its keys go at the end."""
    tag = new_id("usagewin")

    def name(part: str) -> str:
        return f"{tag}-{part}"

    yield name
    doomed = [key async for key in redis.scan_iter(match=f"hero:usage:{tag}-*", count=1000)]
    if doomed:
        await redis.delete(*doomed)


def sample(
    sample_id: str,
    contract_id: str = "c1",
    at: datetime = HOUR0,
    *,
    seconds: int = 15,
    network_bytes: int = 1000,
) -> UtilizationSampled:
    return UtilizationSampled(
        sample_id=sample_id,
        workload_id=f"w-{contract_id}",
        replica_id=f"r-{contract_id}",
        contract_id=contract_id,
        node_id="n1",
        cpu=Decimal("0.5"),
        memory=Decimal("0.5"),
        disk=Decimal("0.1"),
        network_bytes=network_bytes,
        sampled_at=at,
        interval_s=seconds,
    )


def text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def state(redis: Redis, name: str) -> dict[str, object]:
    """Every key of the namespace ``name`` and its value, the namespace's prefix left out."""
    prefix = f"hero:usage:{name}:"
    keys = [text(raw) async for raw in redis.scan_iter(match=f"{prefix}*", count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        kinds = [text(kind) for kind in await pipe.execute()]
    async with redis.pipeline(transaction=False) as pipe:
        for key, kind in zip(keys, kinds, strict=True):
            if kind == "hash":
                pipe.hgetall(key)
            elif kind == "set":
                pipe.smembers(key)
            elif kind == "zset":
                pipe.zrange(key, 0, -1, withscores=True)
            else:
                pipe.get(key)
                pipe.ttl(key)
        replies = iter(await pipe.execute())
    found: dict[str, object] = {}
    for key, kind in zip(keys, kinds, strict=True):
        raw: Any = next(replies)
        value: object
        if kind == "hash":
            value = {text(k): text(v) for k, v in raw.items()}
        elif kind == "set":
            value = sorted(text(m) for m in raw)
        elif kind == "zset":
            value = [(text(m), s) for m, s in raw]
        else:
            value = text(raw or b""), next(replies) > 0
        found[key.removeprefix(prefix)] = (kind, value)
    return found


async def test_a_batch_leaves_what_adding_its_samples_one_by_one_leaves(
    redis: Redis, ns: Callable[[str], str]
) -> None:
    rng = random.Random(11)
    batch_ns, ref_ns = ns("batch"), ns("ref")
    batched, reference = UsageWindows(redis, batch_ns), Reference(redis, ref_ns)
    closing = UsageWindows(redis, ref_ns)  # the reference's windows close the same way
    sent: list[UtilizationSampled] = []
    seen_outcomes: set[int] = set()
    contracts = ["c1", "c2", "ctr.x:3@y", "c4"]
    for round_ in range(60):
        batch = []
        for _ in range(rng.randrange(1, 40)):
            if sent and rng.random() < 0.3:
                batch.append((rng.choice(sent), rng.randrange(3)))  # a redelivery
                continue
            made = sample(
                f"s{rng.randrange(400)}",  # ids repeat: the same id in another window too
                rng.choice(contracts),
                HOUR0 + timedelta(seconds=rng.randrange(3 * 3600)),
                seconds=rng.randrange(1, 3601),
                network_bytes=rng.choice([0, 1, rng.randrange(10**9), rng.randrange(10**14)]),
            )
            sent.append(made)
            batch.append((made, rng.randrange(3)))
        if rng.random() < 0.2 and batch:
            batch.append(batch[0])  # the same record twice in one batch
        expected = await reference.add_each(batch)
        assert await batched.add_many(batch) == expected, f"round {round_}"
        seen_outcomes.update(expected)
        if round_ % 7 == 6:  # close a window or two, so later samples for them are LATE
            for contract_id, hour in (await batched.open_before(HOUR0 + timedelta(hours=3)))[:2]:
                await batched.close(contract_id, hour)
                await closing.close(contract_id, hour)
        assert await state(redis, batch_ns) == await state(redis, ref_ns), f"round {round_}"
    assert seen_outcomes == {ADDED, DUPLICATE, LATE}


async def test_outcomes_come_back_in_the_batchs_order(
    redis: Redis, ns: Callable[[str], str]
) -> None:
    windows = UsageWindows(redis, ns("order"))
    await windows.add(sample("old", "c1", HOUR0), 0)
    await windows.close("c1", HOUR0)
    await windows.add(sample("seen", "c2", HOUR0), 0)
    batch = [
        (sample("new", "c2", HOUR0), 0),
        (sample("late", "c1", HOUR0 + timedelta(minutes=59)), 1),
        (sample("seen", "c2", HOUR0), 0),
        (sample("new", "c2", HOUR0), 1),
        (sample("other", "c1", HOUR0 + timedelta(hours=1)), 0),
    ]

    def epoch(partition: int) -> int:
        return int(max(s.sampled_at for s, p in batch if p == partition).timestamp())

    assert await windows.add_many(batch) == [ADDED, LATE, DUPLICATE, DUPLICATE, ADDED]
    window = await windows.read("c2", HOUR0)
    assert (window.seconds, window.network_bytes, window.samples) == (30, 2000, 2)
    # Every sample moves its partition's watermark, the late and the duplicate ones too.
    marks = await redis.hgetall(f"hero:usage:{ns('order')}:watermarks")
    assert marks == {b"0": str(epoch(0)).encode(), b"1": str(epoch(1)).encode()}
    assert epoch(1) == int((HOUR0 + timedelta(minutes=59)).timestamp())
    assert await windows.add_many([]) == []


async def test_a_sealed_window_keeps_its_sums_and_refuses_later_samples(
    redis: Redis, ns: Callable[[str], str]
) -> None:
    """What two workers need: one seals and reads a window while the other adds to it; the
    added sample is LATE (not counted in sums already read), and the sealed window is still
    listed open, so a close cut short by a crash is done again on the same sums."""
    windows = UsageWindows(redis, ns("seal"))
    await windows.add_many([(sample("a"), 0), (sample("b"), 1)])
    await windows.seal("c1", HOUR0)
    before = await windows.read("c1", HOUR0)
    assert await windows.add_many([(sample("c"), 1), (sample("a"), 0)]) == [LATE, LATE]
    assert await windows.read("c1", HOUR0) == before
    assert (before.seconds, before.samples) == (30, 2)
    assert await windows.open_before(HOUR0 + timedelta(hours=1)) == [("c1", HOUR0)]
    assert await windows.counted([("c1", int(HOUR0.timestamp()), "c")]) == [True]
    await windows.seal("c1", HOUR0)  # again, after a crash: nothing changes
    assert await windows.read("c1", HOUR0) == before
    await windows.close("c1", HOUR0)
    assert await windows.open_before(HOUR0 + timedelta(hours=1)) == []


async def test_sums_stay_exact_past_a_doubles_integers(
    redis: Redis, ns: Callable[[str], str]
) -> None:
    windows = UsageWindows(redis, ns("exact"))
    big = 2**62 + 1
    assert await windows.add_many([(sample("a", network_bytes=big), 0)]) == [ADDED]
    assert (await windows.read("c1", HOUR0)).network_bytes == big
    # Two new and one seen: the script sums the new ones itself, and writes the sum whole.
    two = [(sample("b", network_bytes=2**51 + 1), 0), (sample("c", network_bytes=2**51 - 3), 0)]
    assert await windows.add_many([*two, two[0]]) == [ADDED, ADDED, DUPLICATE]
    assert await windows.add_many([(sample("a", network_bytes=big), 0)]) == [DUPLICATE]
    assert (await windows.read("c1", HOUR0)).network_bytes == big + 2**52 - 2


async def test_numbers_past_the_sums_are_refused_with_nothing_written(
    redis: Redis, ns: Callable[[str], str]
) -> None:
    windows = UsageWindows(redis, ns("refused"))
    with pytest.raises(ValueError, match="64-bit"):
        await windows.add_many([(sample("a"), 0), (sample("b", network_bytes=2**63), 0)])
    with pytest.raises(ValueError, match="more than one call sums exactly"):
        await windows.add_many(
            [(sample("a", network_bytes=2**53), 0), (sample("b", network_bytes=1), 0)]
        )
    assert await state(redis, ns("refused")) == {}
    # Alone, such a sample fits (what a consumer falls back to when a batch is refused).
    assert await windows.add_many([(sample("a", network_bytes=2**53), 0)]) == [ADDED]
