"""REST commands: what the CLI sends, behind API keys.

Every route validates its body (pydantic; unknown fields, wrong types and float money are
422 with pydantic's field errors), checks the caller's scope (403 with a reason), then builds
one ``schemas`` command and hands it to the market service (payouts and refunds to the
ledger) on a worker thread -- FastAPI runs these sync routes in its thread pool. Nothing is
written before all of that has passed.

The command id is fresh, or ``gw.<key id>.<Idempotency-Key>`` when the client sends that
header: a retried request is applied once, and its repeat answers 409 ``duplicate_request``.
A key sent again with another request (another body, offer, node or account) is 422
``idempotency_key_reused``: the first request's fingerprint is kept a day in Valkey
(:mod:`hero.readmodels.idempotency`). Payouts and refunds need the header (428
``idempotency_key_required`` without it), as payment providers do: a repeat answers the first
result again (201, the same body), and the store itself refuses the key for another amount,
account or kind, for ever (:mod:`hero.payments.payouts`).

The role a route needs is checked before anything is looked up: a key that may never do it is
403, whether or not the offer or node exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import from_thread
from fastapi import APIRouter, Depends, Header, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hero.domain import negotiation as nego
from hero.domain.errors import Rejected
from hero.domain.node import node_stream
from hero.gateway._openapi import BODY, KEYED, KEYED_SECURITY, errors
from hero.gateway.auth import caller, forbid, refuse, require_farm, require_offtaker, require_role
from hero.gateway.context import GatewayContext, Principal, Role
from hero.market.service import CommandRejected, HandleResult, MarketService
from hero.payments.ledger import LedgerService, PostResult
from hero.payments.payouts import KEY_REUSED, pay_out, refund
from hero.readmodels.idempotency import IdempotencyKeys, fingerprint
from schemas import (
    ApproveOffer,
    ChangeNodeStatus,
    Command,
    Event,
    FarmerPolicy,
    Mandate,
    Money,
    NodeStatus,
    PayOutFarmer,
    RefundOfftaker,
    RejectOffer,
    SetFarmerPolicy,
    SetOfftakerMandate,
    new_id,
)
from schemas.ids import ID_PATTERN, FarmId, NegotiationId, NodeId, OfferId, OfftakerId
from schemas.money import in_currency

__all__ = [
    "CONFLICT_REASONS",
    "MandateBody",
    "NodeStatusBody",
    "PayoutBody",
    "PolicyBody",
    "RefundBody",
    "RejectBody",
    "command_id_for",
    "refusal_status",
    "router",
]

CONFLICT_REASONS = frozenset(
    {
        "contention", "already_registered", "already_firm", "already_countered",
        "awaiting_approval", "counter_pending", "enough_accepted", "expired", "hold_ended",
        "hold_expired", "insufficient_capacity", "insufficient_funds", "negotiation_closed",
        "node_unavailable", "offer_expired", "too_late", "duplicate_transfer", "offers_accepted",
    }
)  # fmt: skip
"""Service refusals that depend on the current state (409); ``unknown_*`` ones are 404 (what
the command names does not exist), the others 400."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyBody(_Body):
    policy: FarmerPolicy
    node_id: NodeId | None = Field(default=None, description="for this node of the farm only")
    source_text: str | None = Field(default=None, max_length=8000)


class MandateBody(_Body):
    mandate: Mandate
    source_text: str | None = Field(default=None, max_length=8000)


class NodeStatusBody(_Body):
    status: NodeStatus
    reason: str = Field(default="set through the gateway", max_length=500)


class RejectBody(_Body):
    reason: str = Field(default="rejected by the farmer", min_length=1, max_length=500)


# Payouts and refunds move TFT, more than 0 (hero.payments refuses others): the schema says so.
_TFT = in_currency("TFT", positive=True)


class _MoneyOutBody(_Body):
    """Money leaving the grid: TFT above zero, as published (checked here so a body the
    command would refuse is a 422 naming ``amount``, never an error inside the route)."""

    amount: Money = Field(json_schema_extra=_TFT)

    @field_validator("amount")
    @classmethod
    def _positive_tft(cls, amount: Money) -> Money:
        if amount.currency.value != "TFT":
            raise ValueError(f"must be TFT, got {amount.currency.value}")
        if amount.amount <= 0:
            raise ValueError(f"must be above zero, got {amount}")
        return amount


class PayoutBody(_MoneyOutBody):
    farm_id: FarmId


class RefundBody(_MoneyOutBody):
    offtaker_id: OfftakerId
    reason: str = Field(min_length=1, max_length=200)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=ID_PATTERN,
        max_length=150,
        description="retry with the same key: the request is applied once",
    ),
]


def command_id_for(principal: Principal, idempotency_key: str | None, prefix: str) -> str:
    """The client's key, scoped to its API key (two clients never collide), or a fresh id."""
    if idempotency_key:
        return f"gw.{principal.key_id}.{idempotency_key}"
    return new_id(f"gw-{prefix}")


def refusal_status(reason: str) -> int:
    if reason == KEY_REUSED:
        return status.HTTP_422_UNPROCESSABLE_ENTITY
    if reason in CONFLICT_REASONS:
        return status.HTTP_409_CONFLICT
    if reason.startswith("unknown_"):
        return status.HTTP_404_NOT_FOUND
    return status.HTTP_400_BAD_REQUEST


#: The payouts' and refunds' Idempotency-Key, published as required. The parameter itself is
#: optional (and left out of the schema) so that a request without it is 428 with the reason,
#: as payment APIs answer, not a bare field error.
REQUIRED_IDEMPOTENCY_KEY: dict[str, Any] = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": 150},
            "description": "required: a retry with the same key is applied once",
        }
    ]
}
MoneyOutKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", pattern=ID_PATTERN, max_length=150, include_in_schema=False),
]


def _required(idempotency_key: str | None) -> str:
    if not idempotency_key:
        refuse(
            status.HTTP_428_PRECONDITION_REQUIRED,
            "idempotency_key_required",
            "money leaving the grid needs an Idempotency-Key header (a retry with the same key "
            "is applied once); nothing written",
        )
    return idempotency_key


def _events(events: list[Event]) -> list[dict[str, Any]]:
    return [{"type": event.TYPE, "payload": event.model_dump(mode="json")} for event in events]


def _duplicate(command_id: str) -> None:
    refuse(
        status.HTTP_409_CONFLICT,
        "duplicate_request",
        f"command {command_id} was applied before (same Idempotency-Key); nothing written",
    )


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(
        prefix="/v1",
        tags=["commands"],
        dependencies=KEYED_SECURITY,
        responses=errors(*KEYED, *BODY, 404, 409),
    )
    store = context.store
    market = MarketService(
        store, context.clock, actor="gateway", pricing=context.settings.pricing()
    )
    ledger = LedgerService(store, context.clock, actor="gateway")
    context.extras.setdefault("market", market)
    keys = IdempotencyKeys(context.redis)

    def same_request(principal: Principal, command: Command) -> None:
        """Refuse a client's key sent before with another request (called from the route's
        worker thread; Valkey's client lives on the event loop)."""
        if not command.command_id.startswith(f"gw.{principal.key_id}."):
            return  # no Idempotency-Key: a fresh command id
        request = fingerprint(command.TYPE, command.model_dump_json(exclude={"command_id"}))
        if not from_thread.run(keys.claim, command.command_id, request):
            refuse(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                KEY_REUSED,
                "this Idempotency-Key was sent before with another request; nothing written "
                "(use a new key for a new request)",
            )

    def send(principal: Principal, command: Command) -> dict[str, Any]:
        same_request(principal, command)
        try:
            result: HandleResult = market.handle(command, actor=f"gateway:{principal.key_id}")
        except CommandRejected as error:
            refuse(refusal_status(error.reason), error.reason, str(error).split(": ", 1)[-1])
        if result.duplicate:
            _duplicate(command.command_id)
        return {"command_id": command.command_id, "events": _events(result.events)}

    def farm_of_node(node_id: str) -> str:
        first = store.read_stream(node_stream(node_id), 1)[:1]
        if not first:
            refuse(status.HTTP_404_NOT_FOUND, "unknown_node", f"node {node_id} is not registered")
        return str(first[0].envelope().payload.get("farm_id"))

    def farm_of_offer(negotiation_id: str, offer_id: str) -> str:
        state = nego.NegotiationState()
        for row in store.read_stream(nego.negotiation_stream(negotiation_id)):
            state = nego.evolve(state, row.envelope().decode())
        offer = state.offers.get(offer_id)
        if offer is None:
            refuse(
                status.HTTP_404_NOT_FOUND,
                "unknown_offer",
                f"negotiation {negotiation_id} has no offer {offer_id}",
            )
        return str(offer.offer.farm_id)

    @api.put("/farms/{farm_id}/policy", summary="Set a farm's (or one node's) policy")
    def set_policy(
        farm_id: FarmId,
        body: PolicyBody,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        require_farm(principal, farm_id)
        if body.node_id is not None and farm_of_node(body.node_id) != farm_id:
            refuse(
                status.HTTP_400_BAD_REQUEST,
                "node_not_in_farm",
                f"node {body.node_id} is not a node of farm {farm_id}",
            )
        command = SetFarmerPolicy(
            command_id=command_id_for(principal, idempotency_key, "policy"),
            farm_id=farm_id,
            node_id=body.node_id,
            policy=body.policy,
            source_text=body.source_text,
        )
        return send(principal, command)

    @api.put("/offtakers/{offtaker_id}/mandate", summary="Set an offtaker's mandate")
    def set_mandate(
        offtaker_id: OfftakerId,
        body: MandateBody,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        require_offtaker(principal, offtaker_id)
        command = SetOfftakerMandate(
            command_id=command_id_for(principal, idempotency_key, "mandate"),
            offtaker_id=offtaker_id,
            mandate=body.mandate,
            source_text=body.source_text,
        )
        return send(principal, command)

    @api.post(
        "/negotiations/{negotiation_id}/offers/{offer_id}/approve",
        summary="Approve an offer of your farm awaiting approval",
    )
    def approve_offer(
        negotiation_id: NegotiationId,
        offer_id: OfferId,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.FARMER, Role.ADMIN)
        require_farm(principal, farm_of_offer(negotiation_id, offer_id))
        command = ApproveOffer(
            command_id=command_id_for(principal, idempotency_key, "approve"),
            negotiation_id=negotiation_id,
            offer_id=offer_id,
        )
        return send(principal, command)

    @api.post(
        "/negotiations/{negotiation_id}/offers/{offer_id}/reject",
        summary="Withdraw an open offer of your farm",
    )
    def reject_offer(
        negotiation_id: NegotiationId,
        offer_id: OfferId,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: IdempotencyKey = None,
        body: RejectBody | None = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.FARMER, Role.ADMIN)
        require_farm(principal, farm_of_offer(negotiation_id, offer_id))
        command = RejectOffer(
            command_id=command_id_for(principal, idempotency_key, "reject"),
            negotiation_id=negotiation_id,
            offer_id=offer_id,
            reason=(body or RejectBody()).reason,
        )
        return send(principal, command)

    @api.put("/nodes/{node_id}/status", summary="Mark a node of your farm up, down or standby")
    def set_node_status(
        node_id: NodeId,
        body: NodeStatusBody,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.FARMER, Role.ADMIN)
        farm_id = farm_of_node(node_id)
        if not principal.owns_farm(farm_id):
            if principal.role == Role.FARMER:
                forbid("not_your_node", f"node {node_id} is of farm {farm_id}, not of yours")
            require_farm(principal, farm_id)
        command = ChangeNodeStatus(
            command_id=command_id_for(principal, idempotency_key, "status"),
            node_id=node_id,
            status=body.status,
            reason=body.reason,
        )
        return send(principal, command)

    def post_out(principal: Principal, command: PayOutFarmer | RefundOfftaker) -> dict[str, Any]:
        actor = f"gateway:{principal.key_id}"
        same_request(principal, command)
        try:
            result: PostResult = (
                pay_out(ledger, command, actor=actor)
                if isinstance(command, PayOutFarmer)
                else refund(ledger, command, actor=actor)
            )
        except Rejected as error:
            refuse(refusal_status(error.reason), error.reason, str(error).split(": ", 1)[-1])
        # A repeat (result.duplicate) carries the first post's appends: the same answer again.
        return {
            "command_id": command.command_id,
            "amount": command.amount.model_dump(mode="json"),
            "appended": [
                {"stream": r.stream, "event_ids": list(r.event_ids), "position": r.last_position}
                for r in result.results
            ],
        }

    @api.post(
        "/payouts",
        status_code=status.HTTP_201_CREATED,
        summary="Pay a farmer out (admin)",
        responses=errors(428),
        openapi_extra=REQUIRED_IDEMPOTENCY_KEY,
    )
    def payout(
        body: PayoutBody,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: MoneyOutKey = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.ADMIN)
        command = PayOutFarmer(
            command_id=command_id_for(principal, _required(idempotency_key), "payout"),
            farm_id=body.farm_id,
            amount=body.amount,
        )
        return post_out(principal, command)

    @api.post(
        "/refunds",
        status_code=status.HTTP_201_CREATED,
        summary="Refund an offtaker (admin)",
        responses=errors(428),
        openapi_extra=REQUIRED_IDEMPOTENCY_KEY,
    )
    def refund_offtaker(
        body: RefundBody,
        principal: Annotated[Principal, Depends(caller)],
        idempotency_key: MoneyOutKey = None,
    ) -> dict[str, Any]:
        require_role(principal, Role.ADMIN)
        command = RefundOfftaker(
            command_id=command_id_for(principal, _required(idempotency_key), "refund"),
            offtaker_id=body.offtaker_id,
            amount=body.amount,
            reason=body.reason,
        )
        return post_out(principal, command)

    return api
