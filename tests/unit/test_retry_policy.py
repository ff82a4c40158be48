"""Which errors a consumer waits out (a dependency down) and which it dead-letters (the data)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    UnknownError,
    UnknownTopicOrPartitionError,
)
from pydantic import ValidationError
from redis import exceptions as redis_errors

from hero.log.codec import DecodeError, decode_record
from hero.log.retry import (
    Backoff,
    InfrastructureError,
    RetryState,
    is_infrastructure_error,
    retry_infrastructure,
)
from schemas import UtilizationSampled


def _validation_error() -> ValidationError:
    try:
        UtilizationSampled.model_validate({"sample_id": "s1"})
    except ValidationError as error:
        return error
    raise AssertionError("a sample without its fields was accepted")


def _decode_error() -> DecodeError:
    try:
        decode_record(b"{not json")
    except DecodeError as error:
        return error
    raise AssertionError("decoded garbage")


INFRASTRUCTURE = [
    redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Valkey is loading the dataset in memory"),
    redis_errors.AuthenticationError("invalid username-password pair"),
    redis_errors.ResponseError("NOAUTH Authentication required."),
    redis_errors.ResponseError("LOADING Valkey is loading the dataset in memory"),
    KafkaConnectionError("Unable to bootstrap from 127.0.0.1:9092"),
    KafkaTimeoutError(),
    NotLeaderForPartitionError(),
    UnknownTopicOrPartitionError(),
    UnknownError(),  # the broker's own failure: Tansu answered a produce so, just restarted
    sqlite3.OperationalError("database is locked"),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(),
    OSError(113, "No route to host"),
    InfrastructureError("the store is away"),
]
DATA = [
    ValueError("network_bytes does not fit a 64-bit sum"),
    _validation_error(),
    _decode_error(),
    redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
    redis_errors.DataError("Invalid input of type: 'NoneType'"),
    sqlite3.OperationalError("no such table: events"),
    CommitFailedError(),
    KeyError("contract_id"),
    FileNotFoundError(2, "No such file or directory"),
]


@pytest.mark.parametrize("error", INFRASTRUCTURE, ids=lambda e: type(e).__name__)
def test_a_dependency_that_is_down_is_infrastructure(error: BaseException) -> None:
    assert is_infrastructure_error(error)


@pytest.mark.parametrize("error", DATA, ids=lambda e: type(e).__name__)
def test_a_record_that_fails_by_itself_is_data(error: BaseException) -> None:
    assert not is_infrastructure_error(error)


def test_the_backoff_doubles_from_a_tenth_of_a_second_to_five() -> None:
    delays = Backoff().delays()
    assert [delays.take() for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_infrastructure_errors_are_retried_past_any_count_and_data_errors_raised_at_once() -> None:
    state = RetryState()
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) <= 12:  # far more than the three attempts a data error gets
            raise redis_errors.ConnectionError("Connection refused")
        return "done"

    async def bad() -> str:
        calls.append(1)
        raise ValueError("bad sample")

    quick = Backoff(first_s=0.0, cap_s=0.0)
    assert asyncio.run(retry_infrastructure(flaky, "windows", state=state, backoff=quick)) == "done"
    assert (len(calls), state.retries, state.waiting_on) == (13, 12, None)
    calls.clear()
    with pytest.raises(ValueError, match="bad sample"):
        asyncio.run(retry_infrastructure(bad, "windows", state=state, backoff=quick))
    assert len(calls) == 1
