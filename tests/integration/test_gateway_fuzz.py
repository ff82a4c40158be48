"""Schemathesis against the gateway's own ``/openapi.json``, with an admin, an offtaker and a
developer key: any 5xx, any status an operation does not declare, any answer that breaks its
declared schema or content type, and any schema-valid input refused fails the test.

The gateway is the real app (``create_app``) served by uvicorn on 127.0.0.1, over a store of
this module's own (a seeded market) and the session stack's Valkey (read models under a prefix
of its own; the keys where the gateway reads them). The fuzz writes commands with random ids:
its own store keeps them away from the stack's agents and the other tests.

Bounded: a fixed seed, and ``MAX_EXAMPLES`` generated cases per operation and key besides
schemathesis' examples and coverage phases (the edges of every parameter and body, wrong
methods); no ``max-time``, which would make schemathesis repeat the fuzzing until it is spent.
About a minute on a 2-core machine. The operations that need no key are fuzzed in the admin
key's run only.
The event streams never end and are not fuzzed (tests/integration/test_gateway_streams.py
covers them), nor is the payment webhook, which needs a provider's signature and passes
everything to the treasury.

A rule between fields that JSON Schema cannot state (``min_replicas <= max_replicas``, a
workload's replicas within its autoscale bounds, unique workload ids) is refused with 422 and
pydantic's ``value_error`` on the object: such refusals are counted and shown, not failures.
Every other refusal of schema-valid input is one.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
import uvicorn
from redis.asyncio import Redis
from schemathesis.engine import Status, events
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from hero.config import HeroSettings
from hero.domain.clock import SystemClock
from hero.gateway.app import create_app
from hero.gateway.context import GatewayContext, Role
from hero.readmodels.keys import ApiKeys
from hero.store import EventStore
from schemas import Resources
from schemas.ids import OFFTAKER_ID_MAX
from tests._wait import wait_until
from tests.integration._market import seed_market

if TYPE_CHECKING:
    from tests._engines import RunningStack, TestStore

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
FARM, NODE, BUYER = f"fzf-{RUN}", f"fzf-{RUN}-n1", f"fzo-{RUN}"
KEYS: dict[str, tuple[Role, list[str]]] = {
    "admin": (Role.ADMIN, []),
    "offtaker": (Role.OFFTAKER, [BUYER]),
    "developer": (Role.DEVELOPER, []),
}
SEED = 13
MAX_EXAMPLES = 30
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "response_headers_conformance",
    "missing_required_header",
    "ignored_auth",
    "negative_data_rejection",
    "valid_input_accepted",  # positive_data_acceptance, less the cross-field rules (above)
)
#: Never fuzzed: the streams never end; the webhook needs a provider's signature.
NOT_FUZZED = r"^/v1/streams/|^/webhooks/"
#: Operations that need no key: fuzzed once, with the admin key's run.
PUBLIC_TAGS = r"^(health|catalogue|metrics|dashboard)$"

_cross_field: collections.Counter[str] = collections.Counter()
_stateful: collections.Counter[str] = collections.Counter()


def _is_cross_field(response: schemathesis.Response) -> bool:
    """A 422 whose every error is a model's own rule over several of its fields."""
    if response.status_code != 422:
        return False
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return (
        isinstance(detail, list)
        and bool(detail)
        and all(
            isinstance(e, dict)
            and e.get("type") == "value_error"
            and isinstance(e.get("input"), dict)
            for e in detail
        )
    )


#: Refusals no schema can rule out, by their code: a page cursor is an opaque token the
#: gateway hands out (a well-formed one it did not is 400 invalid_cursor), and an
#: Idempotency-Key sent again with another request (the fuzzer reuses values) is refused by
#: what the gateway already holds, not by the request's shape; nor can it say how long the
#: log is (an as_of position past its head).
STATEFUL_REFUSALS = {
    (400, "invalid_cursor"),
    (400, "as_of_past_head"),  # a well-formed position the log has not reached
    (422, "idempotency_key_reused"),
}


def _stateful_refusal(response: schemathesis.Response) -> bool:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    code = detail.get("error") if isinstance(detail, dict) else None
    return (response.status_code, code) in STATEFUL_REFUSALS


@schemathesis.check
def valid_input_accepted(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Schemathesis' positive_data_acceptance, but a cross-field rule's 422 and the refusals
    of :data:`STATEFUL_REFUSALS` are counted, not failed (the summary shows them)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _is_cross_field(response):
            _cross_field[case.operation.label] += 1
            return None
        if _stateful_refusal(response):
            _stateful[case.operation.label] += 1
            return None
        raise


@dataclass
class Gateway:
    url: str
    keys: dict[str, str]
    store: EventStore


@dataclass
class Figures:
    """What one key's run did."""

    who: str
    cases: int = 0
    statuses: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stop: str = ""


async def _make_keys(redis_url: str) -> dict[str, str]:
    redis = Redis.from_url(redis_url)
    try:
        keys = ApiKeys(redis)
        return {who: (await keys.create(*spec))[0] for who, spec in KEYS.items()}
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def gateway(
    stack: RunningStack,
    tmp_path_factory: pytest.TempPathFactory,
    store_factory: Callable[[], TestStore],
) -> Iterator[Gateway]:
    directory: Path = tmp_path_factory.mktemp("gateway-fuzz")
    redis_url = stack.endpoints.redis_url
    store = store_factory().open()
    seed_market(
        store,
        actor="test-fuzz",
        nodes={NODE: FARM},
        seller=(FARM, NODE),
        buyer=BUYER,
        shape=Resources.from_gb(cru=1, mru_gb=2, sru_gb=10),
        open_offer_firm=False,
    )
    keys = asyncio.run(_make_keys(redis_url))
    # No rate limits: the fuzzer sends thousands of requests a minute with one key, and a 429
    # would stand in for the answer under test (test_gateway_bounds tests the limits).
    settings = HeroSettings(data_dir=directory, redis_url=redis_url, gateway_rate="off")
    context = GatewayContext(
        settings=settings, store=store, redis=Redis.from_url(redis_url), clock=SystemClock()
    )
    app = create_app(context, prefix=f"fuzz-{RUN}")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="fuzz-gateway", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "the gateway to listen")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Gateway(f"http://127.0.0.1:{port}", keys, store)
    finally:
        server.should_exit = True
        thread.join(15)
        store.close()


def _config(gateway: Gateway, who: str) -> schemathesis.Config:
    skipped: list[dict[str, Any]] = [{"include-path-regex": NOT_FUZZED, "enabled": False}]
    if who != "admin":
        skipped.append({"include-tag-regex": PUBLIC_TAGS, "enabled": False})
    return schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {gateway.keys[who]}"},
            "workers": 1,
            "seed": SEED,
            "continue-on-failure": True,
            "request-timeout": 10,
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
                # a money route without its Idempotency-Key is 428, as payment APIs answer
                "missing_required_header": {
                    "enabled": True,
                    "expected-statuses": [400, 401, 403, 406, 415, 422, 428],
                },
            },
            "generation": {"max-examples": MAX_EXAMPLES, "no-shrink": True},
            "phases": {"stateful": {"enabled": False}},
            "operations": skipped,
        }
    )


def _record(figures: Figures, recorder: Any) -> None:
    figures.cases += len(recorder.cases)
    for interaction in recorder.interactions.values():
        if interaction.response is not None:
            figures.statuses[recorder.label].add(interaction.response.status_code)
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                case = recorder.cases[case_id].value
                response = recorder.interactions.get(case_id)
                answer = response.response if response is not None else None
                got = f"{answer.status_code} {answer.content[:300]!r}" if answer else "no answer"
                figures.failures.append(
                    f"[{figures.who}] {recorder.label}: {check.name}: {failure.title}: "
                    f"{' '.join(failure.message.split())}\n    sent {case.body!r:.300}\n"
                    f"    got {got}"
                )


def _run(gateway: Gateway, who: str) -> Figures:
    figures = Figures(who)
    schema = schemathesis.openapi.from_url(
        f"{gateway.url}/openapi.json", config=_config(gateway, who)
    )
    started = time.monotonic()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(figures, event.recorder)
        elif isinstance(event, events.NonFatalError):
            figures.errors.append(f"[{who}] {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            figures.errors.append(f"[{who}] fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            figures.stop = str(event.stop_reason)
    figures.seconds = time.monotonic() - started
    return figures


def _summary(runs: list[Figures]) -> str:
    operations: dict[str, set[int]] = collections.defaultdict(set)
    for run in runs:
        for label, seen in run.statuses.items():
            operations[label] |= seen
    unique = sum(len(seen) for seen in operations.values())
    lines = [
        f"gateway fuzz: {sum(r.cases for r in runs)} cases "
        f"({', '.join(f'{r.who} {r.cases} in {r.seconds:.0f} s, {r.stop}' for r in runs)}); "
        f"{len(operations)} operations, {unique} unique (operation, status) pairs; "
        f"failures: {sum(len(r.failures) for r in runs)}; errors: "
        f"{sum(len(r.errors) for r in runs)}; cross-field 422s (not failures): "
        f"{sum(_cross_field.values())} {dict(_cross_field)}; stateful refusals (not failures): "
        f"{sum(_stateful.values())} {dict(_stateful)}"
    ]
    lines += [f"  {label}: {sorted(seen)}" for label, seen in sorted(operations.items())]
    return "\n".join(lines)


def test_schemathesis_finds_no_5xx_no_undocumented_status_and_no_valid_input_refused(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    _cross_field.clear()
    _stateful.clear()
    runs = [_run(gateway, who) for who in KEYS]
    summary = _summary(runs)
    with capsys.disabled():
        print(f"\n{summary}")
    assert all(run.cases > 0 for run in runs), summary
    problems = [p for run in runs for p in (*run.failures, *run.errors)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])


def test_an_offtaker_id_too_long_for_its_streams_is_refused_not_a_500(gateway: Gateway) -> None:
    """What the fuzz found: a 200-character offtaker id passed the id check, and its stream
    (``offtaker-<id>``) broke the store's 200 at append: a 500. Now 422, nothing written; the
    longest id that keeps every derived id within 200 (``OFFTAKER_ID_MAX``) is taken."""
    mandate = {
        "workloads": [{"workload_id": "web", "resources": {"cru": 1, "mru": 2**30}, "replicas": 1}],
        "budget_month": {"amount": "100", "currency": "USD"},
        "max_price_cu_hour": {"amount": "0.05", "currency": "USD"},
    }
    before = gateway.store.current_position()
    headers = {"Authorization": f"Bearer {gateway.keys['admin']}"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as client:
        too_long = client.put(f"/v1/offtakers/{'o' * 200}/mandate", json={"mandate": mandate})
        fits = client.put(
            f"/v1/offtakers/{'o' * OFFTAKER_ID_MAX}/mandate", json={"mandate": mandate}
        )
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["detail"][0]["loc"] == ["path", "offtaker_id"]
    assert fits.status_code == 200, fits.text
    written = gateway.store.read_all(before + 1, 100)
    assert [row.stream for row in written] == [f"offtaker-{'o' * OFFTAKER_ID_MAX}"]
