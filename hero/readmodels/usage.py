"""Hourly usage windows kept in Valkey/Redis, so an aggregator's state survives its process.

Per contract and hour: a hash of integer sums (seconds, network bytes, samples) and the set
of sample ids already counted; one script adds a sample to both or to neither, so a sample
redelivered after a crash counts once (one call of it adds a whole consumed batch). Per Kafka
partition, the latest sample time seen (the event-time watermark) also lives here: an hour
closes only when every partition that carries samples has moved past it, whatever the wall
clock says and however far a restart rewinds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas import UtilizationSampled

__all__ = ["ADDED", "DUPLICATE", "LATE", "SampleRow", "UsageWindow", "UsageWindows", "row_of"]

ADDED, DUPLICATE, LATE = 1, 0, 2

SampleRow = tuple[str, str, int, int, int, int, int]
"""A sample as its window takes it: ``(sample id, contract id, hour epoch, sample epoch,
seconds, network bytes, partition)``, the partition being the one whose watermark it moves."""


def row_of(sample: UtilizationSampled, partition: int) -> SampleRow:
    """A sample's row: its hour is the start of its UTC hour, its epoch the whole seconds."""
    stamp = sample.sampled_at.timestamp()
    return (
        sample.sample_id,
        sample.contract_id,
        math.floor(stamp) // 3600 * 3600,
        int(stamp),
        sample.interval_s,
        sample.network_bytes,
        partition,
    )


_INT64_MAX = 2**63 - 1
_DOUBLE_EXACT = 2**53  # a Lua number (a double) holds every integer up to this one

# One call adds a whole batch of samples (one round trip per consumed batch), with the outcome
# and the state of adding them one by one: every sample moves its partition's watermark up to
# it; a sample whose window is closed is LATE; one already in the window's seen set, or earlier
# in the batch, is a DUPLICATE; the rest are ADDED to the seen set and the sums. The work is
# per window, not per sample: the window's sums move once by its added samples' totals, which
# the caller summed exactly (all of its distinct samples, the usual case) or which are summed
# here (some were seen before; the caller keeps such totals within a double's exact integers).
# The caller finds the copies of a sample within the batch (the script only says whether they
# are DUPLICATE or LATE), so the script's own work per sample is one membership test, one
# digit and, for the added, one set member. The write that can fail in practice (bytes past
# 64 bits) comes first, so a window takes all its samples or none; the window enters the open
# set before its sums move, so a window with sums will close.
# A batch spans many windows, so their keys (named as ``UsageWindows._keys`` names them) are
# made here from ARGV[1] rather than passed one by one: hundreds of keys cost more to pass than
# the script takes to run. The windows live on one server, not a cluster.
# KEYS: open zset, watermarks hash
# ARGV[1]: the key prefix; ARGV[2]: JSON {"m": [[partition, latest sample epoch], ...],
#   "w": [[contract id, hour epoch, seconds, bytes, [sample id, ...], [seconds, ...],
#   [bytes, ...]], ...]}: a window's distinct samples and their numbers; the window's totals
#   are strings, written as they are; a sample's numbers are numbers, only summed as said above.
# Returns one word per window, in order, joined by commas: ``A`` (its samples all ADDED), ``L``
# (all LATE: its hour is closed), or one digit per sample (1 ADDED, 0 DUPLICATE); the caller
# knows each sample's place in the batch, and that a copy of one is a DUPLICATE unless LATE.
_ADD_MANY = """
local function each_chunk(command, key, items)
  if #items <= 1000 then return redis.call(command, key, unpack(items)) end
  local found = {}
  for first = 1, #items, 1000 do
    local part = redis.call(command, key, unpack(items, first, math.min(first + 999, #items)))
    if type(part) == 'table' then
      for _, value in ipairs(part) do found[#found + 1] = value end
    end
  end
  return found
end

local batch = cjson.decode(ARGV[2])
for _, mark in ipairs(batch.m) do
  local latest = tonumber(redis.call('HGET', KEYS[2], mark[1]) or '0')
  if tonumber(mark[2]) > latest then redis.call('HSET', KEYS[2], mark[1], mark[2]) end
end
local names, markers = {}, {}
for i, w in ipairs(batch.w) do
  names[i] = ARGV[1] .. ':' .. w[1] .. ':' .. w[2]
  markers[i] = names[i] .. ':closed'
end
-- Usually no window of the batch is closed: one call says so for all of them.
local some_closed = false
for first = 1, #markers, 1000 do
  local upto = math.min(first + 999, #markers)
  if redis.call('EXISTS', unpack(markers, first, upto)) > 0 then some_closed = true end
end
local out = {}
for i, w in ipairs(batch.w) do
  local name, ids = names[i], w[5]
  if some_closed and redis.call('EXISTS', markers[i]) == 1 then
    out[i] = 'L'
  else
    local known = each_chunk('SMISMEMBER', name .. ':seen', ids)
    local before = 0
    for j = 1, #ids do before = before + known[j] end
    local new = ids
    if before == 0 then
      out[i] = 'A'
    else
      local digits = {}
      new = {}
      for j = 1, #ids do
        if known[j] == 1 then
          digits[j] = '0'
        else
          new[#new + 1] = ids[j]
          digits[j] = '1'
        end
      end
      out[i] = table.concat(digits)
    end
    if #new > 0 then
      local sums = name .. ':sums'
      if before > 0 then
        local seconds, bytes = 0, 0
        for j = 1, #ids do
          if known[j] ~= 1 then seconds, bytes = seconds + w[6][j], bytes + w[7][j] end
        end
        w[3], w[4] = string.format('%.0f', seconds), string.format('%.0f', bytes)
      end
      redis.call('HINCRBY', sums, 'bytes', w[4])
      redis.call('ZADD', KEYS[1], w[2], w[2] .. '|' .. w[1])
      redis.call('HINCRBY', sums, 'seconds', w[3])
      redis.call('HINCRBY', sums, 'samples', #new)
      each_chunk('SADD', name .. ':seen', new)
    end
  end
end
return table.concat(out, ',')
"""

# KEYS: sums hash, seen set, open zset, closed marker; ARGV: open member, ttl seconds
_CLOSE = """
redis.call('SET', KEYS[4], '1', 'EX', ARGV[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


@dataclass(slots=True)
class _Window:
    """A window's part of a batch: its distinct samples' totals, ids, positions and numbers,
    and the positions of their later copies, for the script."""

    seconds: int = 0
    network_bytes: int = 0
    ids: dict[str, None] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    each_seconds: list[int] = field(default_factory=list)
    each_bytes: list[int] = field(default_factory=list)
    copies: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UsageWindow:
    contract_id: str
    hour: datetime
    seconds: int
    network_bytes: int
    samples: int


class UsageWindows:
    """Keys under ``hero:usage:{name}:``; ``name`` separates aggregators sharing a server."""

    def __init__(self, redis: Redis, name: str = "usage", closed_ttl_s: int = 7 * 86400):
        self._redis = redis
        self._prefix = f"hero:usage:{name}"
        self._open = f"{self._prefix}:open"
        self._watermarks = f"{self._prefix}:watermarks"
        self._ttl = closed_ttl_s
        self._add_many: Any = redis.register_script(_ADD_MANY)
        self._close: Any = redis.register_script(_CLOSE)

    def _keys(self, contract_id: str, hour: datetime) -> list[str]:
        window = f"{self._prefix}:{contract_id}:{int(hour.timestamp())}"
        return [f"{window}:sums", f"{window}:seen", self._open, f"{window}:closed"]

    @staticmethod
    def _member(contract_id: str, hour: datetime) -> str:
        return f"{int(hour.timestamp())}|{contract_id}"

    async def add(self, sample: UtilizationSampled, partition: int) -> int:
        """ADDED, DUPLICATE (counted before) or LATE (its hour is closed)."""
        return (await self.add_many([(sample, partition)]))[0]

    async def add_many(self, samples: Sequence[tuple[UtilizationSampled, int]]) -> list[int]:
        """Each sample's ``add`` outcome, in order, for one round trip: the outcomes and the
        state of adding them one by one. Raises ValueError, having written nothing, when a
        sample's bytes do not fit a sum (64 bits), or a window's samples in the batch carry
        more than 2**53 bytes (add such samples one by one)."""
        return [int(digit) for digit in await self.add_rows([row_of(*item) for item in samples])]

    async def add_rows(self, rows: Sequence[SampleRow]) -> str:
        """``add_many`` of samples given as rows (``streams``' decode gives them): one digit
        per row, in order (``1`` ADDED, ``0`` DUPLICATE, ``2`` LATE)."""
        if not rows:
            return ""
        windows: dict[tuple[str, int], _Window] = {}
        marks: dict[int, int] = {}
        for position, (
            sample_id,
            contract_id,
            hour,
            epoch,
            seconds,
            network_bytes,
            partition,
        ) in enumerate(rows, 1):
            if not 0 <= network_bytes <= _INT64_MAX:
                raise ValueError(
                    f"sample {sample_id}: network_bytes {network_bytes} does not fit a 64-bit sum"
                )
            if epoch > marks.get(partition, epoch - 1):
                marks[partition] = epoch
            window = windows.get((contract_id, hour))
            if window is None:
                window = windows[(contract_id, hour)] = _Window()
            elif sample_id in window.ids:
                window.copies.append(position)
                continue
            window.ids[sample_id] = None
            window.positions.append(position)
            window.each_seconds.append(seconds)
            window.each_bytes.append(network_bytes)
            window.seconds += seconds
            window.network_bytes += network_bytes
        listed = []
        for (contract_id, hour), window in windows.items():
            if len(window.ids) > 1 and window.network_bytes > _DOUBLE_EXACT:
                # The script sums a window's samples itself when some are duplicates.
                raise ValueError(
                    f"{len(window.ids)} samples of {contract_id} at {hour} carry "
                    f"{window.network_bytes} network bytes, more than one call sums exactly"
                )
            listed.append(
                (
                    contract_id,
                    str(hour),
                    str(window.seconds),
                    str(window.network_bytes),
                    list(window.ids),
                    window.each_seconds,
                    window.each_bytes,
                )
            )
        batch = {
            "m": [(str(partition), str(epoch)) for partition, epoch in marks.items()],
            "w": listed,
        }
        result = await self._add_many(
            keys=[self._open, self._watermarks], args=[self._prefix, orjson.dumps(batch)]
        )
        words = _text(result).split(",")
        if len(words) != len(windows):
            raise RuntimeError(f"usage windows: {len(words)} outcomes for {len(windows)} windows")
        return _outcomes(len(rows), list(windows.values()), words)

    async def counted(self, samples: Sequence[tuple[str, int, str]]) -> list[bool]:
        """For each ``(contract id, hour epoch, sample id)``: is it counted in its window, or
        is its hour closed (so sending it again would change nothing)?"""
        if not samples:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for contract_id, hour, sample_id in samples:
            window = f"{self._prefix}:{contract_id}:{hour}"
            pipe.sismember(f"{window}:seen", sample_id)
            pipe.exists(f"{window}:closed")
        found = await pipe.execute()
        return [bool(found[i]) or bool(found[i + 1]) for i in range(0, len(found), 2)]

    async def watermark(self) -> datetime | None:
        """The earliest of the partitions' latest sample times: every partition is past it."""
        marks = await self._redis.hvals(self._watermarks)
        if not marks:
            return None
        return datetime.fromtimestamp(min(int(m) for m in marks), UTC)

    async def open_before(self, moment: datetime) -> list[tuple[str, datetime]]:
        """Open windows whose hour starts before ``moment``, oldest first."""
        members = await self._redis.zrangebyscore(self._open, "-inf", f"({int(moment.timestamp())}")
        found = []
        for member in members:
            epoch, _, contract_id = _text(member).partition("|")
            found.append((contract_id, datetime.fromtimestamp(int(epoch), UTC)))
        return found

    async def read(self, contract_id: str, hour: datetime) -> UsageWindow:
        raw = await self._redis.hgetall(self._keys(contract_id, hour)[0])
        sums = {_text(key): int(value) for key, value in raw.items()}
        return UsageWindow(
            contract_id,
            hour,
            sums.get("seconds", 0),
            sums.get("bytes", 0),
            sums.get("samples", 0),
        )

    async def seal(self, contract_id: str, hour: datetime) -> None:
        """Refuse the window's later samples (LATE) and keep its sums: what ``read`` gives
        after this is what the window's fact records. With two workers, one may add to a
        window while the other closes it: sealed first, the sample is LATE, not counted in
        a window already read. A sealed window stays open until ``close``, so a close cut
        short by a crash is done again on the same sums."""
        await self._redis.set(self._keys(contract_id, hour)[3], "1", ex=self._ttl)

    async def seal_many(self, windows: Sequence[tuple[str, datetime]]) -> None:
        """``seal`` each window, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for contract_id, hour in windows:
            pipe.set(self._keys(contract_id, hour)[3], "1", ex=self._ttl)
        await pipe.execute()

    async def read_many(self, windows: Sequence[tuple[str, datetime]]) -> list[UsageWindow]:
        """``read`` each window, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for contract_id, hour in windows:
            pipe.hgetall(self._keys(contract_id, hour)[0])
        found = []
        for (contract_id, hour), raw in zip(windows, await pipe.execute(), strict=True):
            sums = {_text(key): int(value) for key, value in raw.items()}
            found.append(
                UsageWindow(
                    contract_id,
                    hour,
                    sums.get("seconds", 0),
                    sums.get("bytes", 0),
                    sums.get("samples", 0),
                )
            )
        return found

    async def close_many(self, windows: Sequence[tuple[str, datetime]]) -> None:
        """``close`` each window, in one round trip (each window's close is one script)."""
        pipe = self._redis.pipeline(transaction=False)
        for contract_id, hour in windows:
            await self._close(  # queued on the pipeline, sent by its execute
                keys=self._keys(contract_id, hour),
                args=[self._member(contract_id, hour), self._ttl],
                client=pipe,
            )
        await pipe.execute()

    async def close(self, contract_id: str, hour: datetime) -> None:
        """Forget the window; samples for it that arrive later are LATE, not counted."""
        await self._close(
            keys=self._keys(contract_id, hour), args=[self._member(contract_id, hour), self._ttl]
        )


def _outcomes(count: int, windows: list[_Window], words: list[str]) -> str:
    """Each row's digit, in batch order, from the script's word for each window."""
    if all(word == "A" for word in words) and not any(window.copies for window in windows):
        return "1" * count  # the usual batch: every sample new
    digits = bytearray(b"1" * count)
    for window, word in zip(windows, words, strict=True):
        copy = b"2" if word == "L" else b"0"
        for position in window.copies:
            digits[position - 1] = copy[0]
        if word == "L":
            for position in window.positions:
                digits[position - 1] = copy[0]
        elif word != "A":
            if len(word) != len(window.positions):
                raise RuntimeError(f"usage windows: {word!r} for {len(window.positions)} samples")
            for position, digit in zip(window.positions, word.encode(), strict=True):
                digits[position - 1] = digit
    return digits.decode()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
