"""The gateway of the running stack, over HTTP: each role's allowed and refused calls, and bad
input refused with nothing written. Keys are made with ApiKeys in the stack's Valkey, under
the default prefix the stack's gateway reads; the market is seeded through MarketService on
the stack's store (ids of this module's own)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from redis.asyncio import Redis

from hero.domain.ledger import Transfer
from hero.domain.negotiation import contract_id_for, negotiation_stream
from hero.domain.node import node_stream
from hero.gateway.context import Role
from hero.market.service import farm_stream, offtaker_stream
from hero.payments.ledger import LedgerService
from hero.payments.payouts import OUTSIDE_TFT
from hero.readmodels.keys import ApiKeys, hash_secret, parse_key
from hero.store import EventStore, open_store
from schemas import Money, Resources, TransferKind
from tests._wait import wait_until
from tests.integration._market import seed_market

if TYPE_CHECKING:
    from tests._engines import RunningStack

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
FARM_A, FARM_B = f"gwa-{RUN}", f"gwb-{RUN}"
NODE_A, NODE_B, NODE_B2 = f"gwa-{RUN}-n1", f"gwb-{RUN}-n1", f"gwb-{RUN}-n2"
OFFTAKER = f"gwo-{RUN}"  # sets its mandate through the gateway
BUYER = f"gwbuyer-{RUN}"  # the offtaker of the seeded contract
NEGO_DONE, NEGO_OPEN = f"{BUYER}.web.1", f"{BUYER}.web.2"
OFFER_DONE, OFFER_OPEN = f"{NEGO_DONE}.{FARM_B}.0", f"{NEGO_OPEN}.{FARM_B}.0"
CONTRACT = contract_id_for(NEGO_DONE, OFFER_DONE)
SHAPE = Resources.from_gb(cru=1, mru_gb=2, sru_gb=10)
POLICY = {"mode": "approve", "price_cu_hour": {"amount": "0.02", "currency": "USD"}}
MANDATE = {
    "workloads": [{"workload_id": "web", "resources": SHAPE.model_dump(), "replicas": 0}],
    "budget_month": {"amount": "100", "currency": "USD"},
    "max_price_cu_hour": {"amount": "0.05", "currency": "USD"},
}


@dataclass
class World:
    url: str
    store: EventStore
    keys: dict[str, str]
    redis_url: str

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.client(who) as client:
            return client.request(method, path, **kwargs)


def _seed(store: EventStore) -> None:
    seed_market(
        store,
        actor="test-gateway",
        nodes={NODE_A: FARM_A, NODE_B: FARM_B, NODE_B2: FARM_B},
        seller=(FARM_B, NODE_B),
        buyer=BUYER,
        shape=SHAPE,
        open_offer_firm=False,
    )


async def _make_keys(redis_url: str) -> dict[str, str]:
    redis = Redis.from_url(redis_url)
    try:
        keys = ApiKeys(redis)
        wanted: dict[str, tuple[Role, list[str]]] = {
            "admin": (Role.ADMIN, []),
            "farmer_a": (Role.FARMER, [FARM_A]),
            "farmer_b": (Role.FARMER, [FARM_B]),
            "offtaker": (Role.OFFTAKER, [OFFTAKER]),
            "buyer": (Role.OFFTAKER, [BUYER]),
            "developer": (Role.DEVELOPER, []),
        }
        return {name: (await keys.create(*spec))[0] for name, spec in wanted.items()}
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def world(stack: RunningStack) -> Iterator[World]:
    assert stack.endpoints.gateway_url, "the stack runs no gateway"
    store = open_store(stack.settings.effective_store_url)
    try:
        _seed(store)
        keys = asyncio.run(_make_keys(stack.endpoints.redis_url))
        yield World(stack.endpoints.gateway_url, store, keys, stack.endpoints.redis_url)
    finally:
        store.close()


def caught_up(world: World) -> None:
    """Wait until every read model has applied what the store holds now."""
    target = world.store.current_position()

    def there() -> bool:
        positions: dict[str, int] = world.call(None, "GET", "/health").json()["read_models"]
        return min(positions.values()) >= target

    wait_until(there, 20, f"the read models at position {target}")


def gateway_writes_since(world: World, position: int) -> list[str]:
    """Types of the events the gateway wrote after ``position`` (the stack's agents may write
    in the meantime: the store's position alone would not tell who moved it)."""
    rows = world.store.read_all(position + 1, 10_000)
    return [row.type for row in rows if row.envelope().actor.startswith("gateway")]


def error_of(answer: httpx.Response) -> str:
    detail = answer.json()["detail"]
    return str(detail["error"]) if isinstance(detail, dict) else "validation"


# -- the basics ------------------------------------------------------------------------------


def test_health_and_openapi_need_no_key(world: World) -> None:
    health = world.call(None, "GET", "/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = world.call(None, "GET", "/openapi.json").json()
    assert spec["info"]["title"] == "HERO gateway"
    assert "/v1/farms/{farm_id}/policy" in spec["paths"]
    assert "/v1/contracts" in spec["paths"]


def test_missing_unknown_malformed_and_revoked_keys_are_401(world: World) -> None:
    assert error_of(world.call(None, "GET", "/v1/contracts")) == "missing_key"
    forged = "hero_0123456789abcdef_" + "x" * 43
    answer = world.call(None, "GET", "/v1/contracts", headers={"X-API-Key": forged})
    assert (answer.status_code, error_of(answer)) == (401, "unknown_key")
    answer = world.call(None, "GET", "/v1/contracts", headers={"Authorization": "Bearer nope"})
    assert (answer.status_code, error_of(answer)) == (401, "malformed_key")

    async def make_and_revoke() -> tuple[str, dict[Any, Any]]:
        redis = Redis.from_url(world.redis_url)
        try:
            keys = ApiKeys(redis)
            key, record = await keys.create(Role.DEVELOPER)
            assert await keys.verify(key) is not None
            stored = await redis.hgetall(f"hero:apikey:{record.key_id}")
            await keys.revoke(record.key_id)
            assert await keys.verify(key) is None
            listed = {r.key_id: r for r in await keys.list()}
            assert listed[record.key_id].revoked
            return key, stored
        finally:
            await redis.aclose()

    key, stored = asyncio.run(make_and_revoke())
    parsed = parse_key(key)
    assert parsed is not None
    assert stored[b"hash"].decode() == hash_secret(parsed[1])
    assert not any(parsed[1].encode() in value for value in stored.values()), "secret at rest"
    answer = world.call(None, "GET", "/v1/contracts", headers={"Authorization": f"Bearer {key}"})
    assert (answer.status_code, error_of(answer)) == (401, "revoked_key")


# -- commands ------------------------------------------------------------------------------


def test_a_farmer_sets_its_farms_policy_once_per_idempotency_key(world: World) -> None:
    body = {"policy": POLICY, "source_text": "ask me first"}
    headers = {"Idempotency-Key": f"policy-{RUN}"}
    first = world.call("farmer_a", "PUT", f"/v1/farms/{FARM_A}/policy", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert [e["type"] for e in first.json()["events"]] == ["FarmerPolicySet"]
    version = world.store.stream_version(farm_stream(FARM_A))
    again = world.call("farmer_a", "PUT", f"/v1/farms/{FARM_A}/policy", json=body, headers=headers)
    assert (again.status_code, error_of(again)) == (409, "duplicate_request")
    assert world.store.stream_version(farm_stream(FARM_A)) == version


def test_an_idempotency_key_sent_again_with_another_request_is_refused(world: World) -> None:
    """It was taken for the first request's repeat (409 duplicate_request) or, on another
    offer or node, applied again."""
    headers = {"Idempotency-Key": f"reuse-{RUN}"}
    path = f"/v1/farms/{FARM_A}/policy"
    first = world.call("farmer_a", "PUT", path, json={"policy": POLICY}, headers=headers)
    assert first.status_code == 200, first.text
    position = world.store.current_position()
    other = {"policy": {**POLICY, "price_cu_hour": {"amount": "0.03", "currency": "USD"}}}
    reused = world.call("farmer_a", "PUT", path, json=other, headers=headers)
    assert (reused.status_code, error_of(reused)) == (422, "idempotency_key_reused"), reused.text
    again = world.call("farmer_a", "PUT", path, json={"policy": POLICY}, headers=headers)
    assert (again.status_code, error_of(again)) == (409, "duplicate_request")
    assert gateway_writes_since(world, position) == []


def test_a_farmer_cannot_set_another_farms_policy(world: World) -> None:
    position = world.store.current_position()
    version = world.store.stream_version(farm_stream(FARM_B))
    for who, error in (("farmer_a", "not_your_farm"), ("buyer", "wrong_role")):
        answer = world.call(who, "PUT", f"/v1/farms/{FARM_B}/policy", json={"policy": POLICY})
        assert (answer.status_code, error_of(answer)) == (403, error), answer.text
        assert answer.json()["detail"]["message"]
    answer = world.call("developer", "PUT", f"/v1/farms/{FARM_B}/policy", json={"policy": POLICY})
    assert answer.status_code == 403
    assert world.store.stream_version(farm_stream(FARM_B)) == version
    # A node of another farm under one's own farm is refused too.
    answer = world.call(
        "farmer_a", "PUT", f"/v1/farms/{FARM_A}/policy", json={"policy": POLICY, "node_id": NODE_B}
    )
    assert (answer.status_code, error_of(answer)) == (400, "node_not_in_farm")
    assert gateway_writes_since(world, position) == []


def test_an_offtaker_sets_its_own_mandate_only(world: World) -> None:
    answer = world.call(
        "offtaker", "PUT", f"/v1/offtakers/{OFFTAKER}/mandate", json={"mandate": MANDATE}
    )
    assert answer.status_code == 200, answer.text
    assert [e["type"] for e in answer.json()["events"]] == ["OfftakerMandateSet"]
    refused = world.call(
        "offtaker", "PUT", f"/v1/offtakers/{BUYER}/mandate", json={"mandate": MANDATE}
    )
    assert (refused.status_code, error_of(refused)) == (403, "not_your_offtaker")
    assert world.store.stream_version(offtaker_stream(BUYER)) == 0
    refused = world.call(
        "farmer_a", "PUT", f"/v1/offtakers/{OFFTAKER}/mandate", json={"mandate": MANDATE}
    )
    assert (refused.status_code, error_of(refused)) == (403, "wrong_role")


def test_only_the_offering_farm_approves_or_rejects_its_offer(world: World) -> None:
    path = f"/v1/negotiations/{NEGO_OPEN}/offers/{OFFER_OPEN}"
    before = world.store.stream_version(negotiation_stream(NEGO_OPEN))
    for who in ("farmer_a", "buyer", "developer"):
        assert world.call(who, "POST", f"{path}/approve").status_code == 403
        assert world.call(who, "POST", f"{path}/reject").status_code == 403
    missing = world.call("farmer_b", "POST", f"/v1/negotiations/{NEGO_OPEN}/offers/nope/approve")
    assert (missing.status_code, error_of(missing)) == (404, "unknown_offer")
    answer = world.call("farmer_b", "POST", f"{path}/approve")
    assert answer.status_code == 200, answer.text
    assert [e["type"] for e in answer.json()["events"]] == ["OfferApproved"]
    again = world.call("farmer_b", "POST", f"{path}/approve")
    assert (again.status_code, error_of(again)) == (409, "already_firm")
    assert world.store.stream_version(negotiation_stream(NEGO_OPEN)) == before + 1


def test_node_status_by_its_farmer_only(world: World) -> None:
    version = world.store.stream_version(node_stream(NODE_B2))
    answer = world.call(
        "farmer_a", "PUT", f"/v1/nodes/{NODE_B2}/status", json={"status": "standby"}
    )
    assert (answer.status_code, error_of(answer)) == (403, "not_your_node")
    assert world.store.stream_version(node_stream(NODE_B2)) == version
    missing = world.call("farmer_b", "PUT", "/v1/nodes/nope/status", json={"status": "down"})
    assert missing.status_code == 404
    answer = world.call(
        "farmer_b", "PUT", f"/v1/nodes/{NODE_B2}/status", json={"status": "standby"}
    )
    assert answer.status_code == 200, answer.text
    assert [e["type"] for e in answer.json()["events"]] == ["NodeStatusChanged"]


def test_payouts_and_refunds_are_for_admins(world: World) -> None:
    payout = {"farm_id": FARM_B, "amount": {"amount": "5", "currency": "TFT"}}
    refund = {"offtaker_id": BUYER, "amount": {"amount": "5", "currency": "TFT"}, "reason": "x"}
    position = world.store.current_position()
    for who in ("farmer_b", "buyer", "developer"):
        assert error_of(world.call(who, "POST", "/v1/payouts", json=payout)) == "wrong_role"
        assert error_of(world.call(who, "POST", "/v1/refunds", json=refund)) == "wrong_role"
    # The admin is let through to the ledger, which refuses: nothing in those accounts.
    key = {"Idempotency-Key": f"empty-{RUN}"}
    answer = world.call("admin", "POST", "/v1/payouts", json=payout, headers=key)
    assert (answer.status_code, error_of(answer)) == (409, "insufficient_funds"), answer.text
    answer = world.call(
        "admin", "POST", "/v1/refunds", json=refund, headers={"Idempotency-Key": f"e2-{RUN}"}
    )
    assert (answer.status_code, error_of(answer)) == (409, "insufficient_funds"), answer.text
    bad = world.call(
        "admin",
        "POST",
        "/v1/payouts",
        json={**payout, "amount": {"amount": 5.5, "currency": "TFT"}},
        headers=key,
    )
    assert bad.status_code == 422
    assert gateway_writes_since(world, position) == []


def _fund(world: World, account: str, amount: str) -> None:
    """Credit ``account`` from the outside world, as a received payment would."""
    seed = Transfer(
        f"seed-{account}", OUTSIDE_TFT, account, Money.of(amount, "TFT"), TransferKind.PAYMENT,
        f"seed-{account}",
    )  # fmt: skip
    LedgerService(world.store, actor="test-gateway").post([seed], f"seed-{account}")


def test_payouts_and_refunds_need_an_idempotency_key(world: World) -> None:
    """A retried money request must not pay twice: without a key it is refused (428)."""
    position = world.store.current_position()
    payout = {"farm_id": FARM_A, "amount": {"amount": "1", "currency": "TFT"}}
    refund = {"offtaker_id": OFFTAKER, "amount": {"amount": "1", "currency": "TFT"}, "reason": "x"}
    for path, body in (("/v1/payouts", payout), ("/v1/refunds", refund)):
        answer = world.call("admin", "POST", path, json=body)
        assert (answer.status_code, error_of(answer)) == (428, "idempotency_key_required"), path
        assert "Idempotency-Key" in answer.json()["detail"]["message"]
    assert gateway_writes_since(world, position) == []


@pytest.mark.parametrize(
    ("path", "account", "body"),
    [
        ("/v1/payouts", f"farmer.{FARM_A}.TFT", {"farm_id": FARM_A}),
        ("/v1/refunds", f"offtaker.{OFFTAKER}.TFT", {"offtaker_id": OFFTAKER, "reason": "unused"}),
    ],
)
def test_a_repeated_payout_or_refund_answers_the_first_result_and_pays_once(
    world: World, path: str, account: str, body: dict[str, Any]
) -> None:
    _fund(world, account, "10")
    key = {"Idempotency-Key": f"out-{path[4:]}-{RUN}"}
    request = {**body, "amount": {"amount": "4", "currency": "TFT"}}
    first = world.call("admin", "POST", path, json=request, headers=key)
    assert first.status_code == 201, first.text
    position = world.store.current_position()
    again = world.call("admin", "POST", path, json=request, headers=key)
    assert (again.status_code, again.json()) == (201, first.json())
    # The same key for another amount is refused, naming the reason; nothing written.
    changes: list[dict[str, Any]] = [{"amount": {"amount": "5", "currency": "TFT"}}]
    if "reason" in body:
        changes.append({"reason": "another reason"})
    for change in changes:
        reused = world.call("admin", "POST", path, json={**request, **change}, headers=key)
        assert (reused.status_code, error_of(reused)) == (422, "idempotency_key_reused"), change
    assert gateway_writes_since(world, position) == []
    legs = [
        row
        for row in world.store.read_stream(f"account-{account}")
        if row.type == "TransferPosted" and row.envelope().payload["kind"] in ("payout", "refund")
    ]
    assert len(legs) == 1, "paid out more than once"
    assert LedgerService(world.store).account(account).balance == Money.of("6", "TFT")


def test_a_role_that_may_never_approve_is_403_before_any_lookup(world: World) -> None:
    """A developer key on approve got 404 unknown_offer: the lookup ran before the role check."""
    for who in ("developer", "buyer"):
        for action in ("approve", "reject"):
            answer = world.call(who, "POST", f"/v1/negotiations/nope/offers/nope/{action}")
            assert (answer.status_code, error_of(answer)) == (403, "wrong_role"), answer.text
        answer = world.call(who, "PUT", "/v1/nodes/nope/status", json={"status": "down"})
        assert (answer.status_code, error_of(answer)) == (403, "wrong_role"), answer.text


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "amount"), [("budget_month", "-400"), ("max_price_cu_hour", "-1")]
)
def test_a_mandate_with_a_negative_budget_or_price_is_422_naming_it(
    world: World, field: str, amount: str
) -> None:
    """Such mandates got 200, and their agents then asked the market again and again."""
    position = world.store.current_position()
    version = world.store.stream_version(offtaker_stream(OFFTAKER))
    mandate = {**MANDATE, field: {"amount": amount, "currency": "USD"}}
    answer = world.call(
        "offtaker", "PUT", f"/v1/offtakers/{OFFTAKER}/mandate", json={"mandate": mandate}
    )
    assert answer.status_code == 422, answer.text
    assert [item["loc"] for item in answer.json()["detail"]] == [["body", "mandate", field]], (
        answer.text
    )
    assert world.store.stream_version(offtaker_stream(OFFTAKER)) == version
    assert gateway_writes_since(world, position) == []


@pytest.mark.parametrize("length", [185, 195])
def test_an_offtaker_or_farm_id_too_long_for_its_derived_ids_is_422_naming_it(
    world: World, length: int
) -> None:
    """A 195-character offtaker id gave 500 on these routes; a 185-character one was
    accepted, then its agent failed every decision."""
    long_id = "o" * length
    position = world.store.current_position()
    key = {"Idempotency-Key": f"long-{length}-{RUN}"}
    tft = {"amount": "1", "currency": "TFT"}
    calls = [
        ("PUT", f"/v1/offtakers/{long_id}/mandate", {"mandate": MANDATE}, ["path", "offtaker_id"]),
        ("POST", "/v1/refunds", {"offtaker_id": long_id, "amount": tft, "reason": "x"},
         ["body", "offtaker_id"]),
        ("POST", "/v1/payouts", {"farm_id": long_id, "amount": tft}, ["body", "farm_id"]),
    ]  # fmt: skip
    for method, path, body, where in calls:
        answer = world.call("admin", method, path, json=body, headers=key)
        assert answer.status_code == 422, (path, answer.text)
        detail = answer.json()["detail"]
        assert [item["loc"] for item in detail] == [where], (path, detail)
        assert "at most" in detail[0]["msg"]
    assert gateway_writes_since(world, position) == []


@pytest.mark.parametrize(
    ("name", "content", "status", "where"),
    [
        ("malformed JSON", b'{"policy": {"mode": ', 422, "json_invalid"),
        ("unknown field", json.dumps({"policy": POLICY, "colour": "red"}).encode(), 422, "colour"),
        (
            "wrong type",
            json.dumps({"policy": {**POLICY, "max_term_hours": "long"}}).encode(),
            422,
            "max_term_hours",
        ),
        (
            "float money",
            json.dumps(
                {"policy": {**POLICY, "price_cu_hour": {"amount": 0.1, "currency": "USD"}}}
            ).encode(),
            422,
            "amount",
        ),
        (
            "oversized body",
            json.dumps({"policy": POLICY, "source_text": "x" * 70_000}).encode(),
            413,
            "body_too_large",
        ),
    ],
)
def test_bad_input_is_refused_with_field_errors_and_nothing_written(
    world: World, name: str, content: bytes, status: int, where: str
) -> None:
    position = world.store.current_position()
    version = world.store.stream_version(farm_stream(FARM_A))
    answer = world.call(
        "farmer_a",
        "PUT",
        f"/v1/farms/{FARM_A}/policy",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == status, (name, answer.text)
    detail = answer.json()["detail"]
    if status == 422:
        assert isinstance(detail, list), name
        assert detail, name
        assert any(where in json.dumps(item) for item in detail), (name, detail)
        assert all("loc" in item and "msg" in item for item in detail)
    else:
        assert detail["error"] == where
    assert world.store.stream_version(farm_stream(FARM_A)) == version, f"{name} wrote something"
    assert gateway_writes_since(world, position) == [], f"{name} wrote something"


def test_a_bad_idempotency_key_is_422(world: World) -> None:
    answer = world.call(
        "farmer_a", "PUT", f"/v1/farms/{FARM_A}/policy", json={"policy": POLICY},
        headers={"Idempotency-Key": "not a key!"},
    )  # fmt: skip
    assert answer.status_code == 422
    assert "Idempotency-Key" in answer.text


# -- queries -------------------------------------------------------------------------------


def test_each_role_reads_its_own_contracts(world: World) -> None:
    caught_up(world)
    admin = world.call("admin", "GET", "/v1/contracts", params={"farm_id": FARM_B}).json()
    assert [c["id"] for c in admin["items"]] == [CONTRACT]
    assert admin["items"][0]["offtaker_id"] == BUYER
    assert admin["position"] >= 1
    mine = world.call("farmer_b", "GET", "/v1/contracts").json()["items"]
    assert CONTRACT in [c["id"] for c in mine]
    assert all(c["farm_id"] == FARM_B for c in mine)
    assert CONTRACT not in [
        c["id"] for c in world.call("farmer_a", "GET", "/v1/contracts").json()["items"]
    ]
    assert error_of(world.call("farmer_a", "GET", f"/v1/contracts/{CONTRACT}")) == "not_in_scope"
    assert (
        error_of(world.call("farmer_a", "GET", "/v1/contracts", params={"farm_id": FARM_B}))
        == "not_your_farm"
    )
    buyer = world.call("buyer", "GET", f"/v1/contracts/{CONTRACT}")
    assert buyer.status_code == 200
    assert buyer.json()["offtaker_id"] == BUYER
    assert world.call("offtaker", "GET", f"/v1/contracts/{CONTRACT}").status_code == 403
    assert (
        world.call("offtaker", "GET", "/v1/contracts", params={"offtaker_id": BUYER}).status_code
        == 403
    )
    assert world.call("admin", "GET", "/v1/contracts/nope").status_code == 404


def test_developers_read_the_market_without_private_fields(world: World) -> None:
    caught_up(world)
    contracts = world.call("developer", "GET", "/v1/contracts", params={"farm_id": FARM_B})
    assert contracts.status_code == 200
    items = contracts.json()["items"]
    assert len(items) == 1
    assert items[0]["farm_id"] == FARM_B
    assert items[0]["node_id"] == NODE_B
    assert items[0]["offtaker_id"].startswith("offtaker-")  # a pseudonym, not the id
    assert BUYER not in contracts.text, "a counterparty's id reached a developer"
    listed = world.call("developer", "GET", "/v1/negotiations")
    assert BUYER.lower() not in listed.text.lower()
    masked = next(n["id"] for n in listed.json()["items"] if n["id"].endswith(".web.1"))
    assert masked.startswith("offtaker-")
    one = world.call("developer", "GET", f"/v1/negotiations/{masked}")  # by the id it was shown
    assert one.status_code == 200
    assert BUYER not in one.text
    assert one.json()["offers"]
    assert "max_price_cu_hour" not in one.json()
    # by the real id: nothing (an answer would confirm whose negotiation it is)
    assert world.call("developer", "GET", f"/v1/negotiations/{NEGO_DONE}").status_code == 404
    node = world.call("developer", "GET", f"/v1/nodes/{NODE_B}")
    assert node.status_code == 200
    assert BUYER.lower() not in node.text.lower(), "a node's contracts named their offtaker"
    farm = world.call("developer", "GET", f"/v1/farms/{FARM_A}")
    assert farm.status_code == 200
    assert "source_text" not in farm.text
    for path in ("/v1/accounts", f"/v1/accounts/offtaker.{BUYER}.TFT", "/v1/workloads"):
        answer = world.call("developer", "GET", path)
        assert (answer.status_code, error_of(answer)) == (403, "not_in_scope"), path
    answer = world.call("developer", "GET", "/v1/contracts", params={"offtaker_id": BUYER})
    assert (answer.status_code, error_of(answer)) == (403, "private_field")


def test_farmers_and_offtakers_see_their_own_market_only(world: World) -> None:
    caught_up(world)
    farms = world.call("farmer_a", "GET", "/v1/farms").json()["items"]
    assert [f["id"] for f in farms] == [FARM_A]
    assert farms[0]["policy"]["mode"] == "approve"
    nodes = world.call("farmer_b", "GET", "/v1/nodes", params={"status": "standby"}).json()
    assert [n["id"] for n in nodes["items"]] == [NODE_B2]
    negotiations = world.call("farmer_b", "GET", "/v1/negotiations", params={"farm_id": FARM_B})
    ids = [n["id"] for n in negotiations.json()["items"]]
    assert NEGO_DONE in ids
    assert NEGO_OPEN in ids
    assert world.call("farmer_a", "GET", f"/v1/negotiations/{NEGO_OPEN}").status_code == 403
    assert world.call("farmer_a", "GET", "/v1/workloads").status_code == 403
    assert world.call("buyer", "GET", "/v1/farms").status_code == 403
    workloads = world.call("offtaker", "GET", "/v1/workloads").json()["items"]
    assert [w["id"] for w in workloads] == [f"{OFFTAKER}/web"]
    assert world.call("offtaker", "GET", f"/v1/workloads/{OFFTAKER}/web").status_code == 200
    negos = world.call("buyer", "GET", "/v1/negotiations").json()["items"]
    assert {n["id"] for n in negos} == {NEGO_DONE, NEGO_OPEN}
    assert world.call("offtaker", "GET", f"/v1/negotiations/{NEGO_DONE}").status_code == 403


def test_a_key_in_the_query_opens_a_stream_but_never_a_rest_call(world: World) -> None:
    """EventSource sends no headers: the dashboard passes its key as ?key= on the streams."""
    key = world.keys["admin"]
    with httpx.Client(base_url=world.url, timeout=10) as client:
        params = {"key": key, "start": "earliest"}
        with client.stream("GET", "/v1/streams/hero.reservations", params=params) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            first = next(line for line in answer.iter_lines() if line.startswith("id:"))
            assert int(first.removeprefix("id:").strip()) >= 0
        rest = client.get("/v1/contracts", params={"key": key})
        assert (rest.status_code, error_of(rest)) == (401, "missing_key")
        wrong = client.get("/v1/streams/hero.reservations", params={"key": "hero_nope"})
        assert wrong.status_code == 401


def test_a_signed_payment_sent_to_the_gateway_reaches_the_treasury_once(
    world: World, stack: RunningStack
) -> None:
    """The provider is given the gateway's address; the treasury verifies and records."""
    from agents.treasury.runtime import webhook_secret
    from agents.treasury.webhook import sign

    event_id = f"evt_gw_{int(time.time() * 1000)}"
    payload = json.dumps(
        {
            "provider_event_id": event_id,
            "provider": "stripe",
            "offtaker_id": OFFTAKER,
            "amount": "20.00",
            "currency": "usd",
        }
    ).encode()
    header = sign(webhook_secret(stack.settings), int(time.time()), payload)
    signed = {"Stripe-Signature": header}
    with httpx.Client(base_url=world.url, timeout=30) as client:
        first = client.post("/webhooks/payments", content=payload, headers=signed)
        again = client.post("/webhooks/payments", content=payload, headers=signed)
        forged = client.post(
            "/webhooks/payments", content=payload, headers={"Stripe-Signature": "t=1,v1=00"}
        )
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "received"
    assert first.json()["duplicate"] is False
    # The same provider event: recorded once, and answered 2xx (a 409 is retried for days).
    assert (again.status_code, again.json()["duplicate"]) == (200, True), again.text
    assert forged.status_code in (400, 401)
    received = [
        row.envelope().decode()
        for row in world.store.read_all(1, world.store.current_position() + 1)
        if row.type == "FiatPaymentReceived"
    ]
    assert [p.provider_event_id for p in received].count(event_id) == 1  # type: ignore[attr-defined]
