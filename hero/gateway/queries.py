"""REST queries over the read models in Valkey, filtered by the caller's scope.

``GET /v1/{farms,nodes,contracts,negotiations,workloads,accounts}`` lists, ``/{id}`` reads
one document. Lists take the filters ``farm_id``, ``offtaker_id``, ``grid`` and ``status``
(equality; ``farm_id`` of a negotiation matches any farm that is a party to it) and answer
``{"position", "count", "items"}``; ``position`` (also the ``X-Hero-Position`` header) is the
log position the projection had applied when it was read. The scope rules are in
:mod:`hero.gateway.scopes`: a projection a role may not read is 403, a document outside the
caller's tenants is 403 when asked by id and left out of lists.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Query, Response, status

from hero.gateway._openapi import KEYED, KEYED_SECURITY, errors
from hero.gateway.auth import caller, forbid, refuse
from hero.gateway.context import GatewayContext, Principal, Role
from hero.gateway.scopes import PROJECTIONS, readable, refusal, shown, visible
from schemas.ids import ID_PATTERN

__all__ = ["POSITION_HEADER", "ReadModelsPort", "router"]

POSITION_HEADER = "X-Hero-Position"
_SINGULAR = {
    "farms": "farm", "nodes": "node", "contracts": "contract",
    "negotiations": "negotiation", "workloads": "workload", "accounts": "account",
}  # fmt: skip


class ReadModelsPort(Protocol):
    """What the routes call (``hero.readmodels.projector.ReadModels``)."""

    async def get(self, name: str, id: str) -> dict[str, Any] | None: ...

    async def all(self, name: str, **equals: Any) -> list[dict[str, Any]]: ...

    async def position(self, name: str) -> int: ...


FilterId = Annotated[str | None, Query(pattern=ID_PATTERN, max_length=200)]
FilterWord = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,32}$")]


def _check_filters(principal: Principal, farm_id: str | None, offtaker_id: str | None) -> None:
    """A filter naming someone else's farm or offtaker is a refusal, not an empty list."""
    if principal.role == Role.FARMER and farm_id is not None and farm_id not in principal.tenants:
        forbid("not_your_farm", f"farm {farm_id} is not one of this key's farms")
    if principal.role == Role.OFFTAKER and offtaker_id not in (None, *principal.tenants):
        forbid("not_your_offtaker", f"this key is not offtaker {offtaker_id}'s")
    if principal.role == Role.DEVELOPER and offtaker_id is not None:
        forbid("private_field", "developer keys do not see offtakers' ids")


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(
        prefix="/v1", tags=["queries"], dependencies=KEYED_SECURITY, responses=errors(*KEYED)
    )

    def models() -> ReadModelsPort:
        port: ReadModelsPort = context.extras["read_models"]
        return port

    def add_lister(name: str) -> None:
        async def list_documents(
            response: Response,
            principal: Annotated[Principal, Depends(caller)],
            farm_id: FilterId = None,
            offtaker_id: FilterId = None,
            grid: FilterWord = None,
            status_: Annotated[FilterWord, Query(alias="status")] = None,
        ) -> dict[str, Any]:
            if not readable(principal, name):
                forbid("not_in_scope", refusal(principal, name))
            _check_filters(principal, farm_id, offtaker_id)
            equals = {"offtaker_id": offtaker_id, "grid": grid, "status": status_}
            if name != "negotiations":
                equals["farm_id"] = farm_id
            read = models()
            position = await read.position(name)
            documents = await read.all(
                name, **{key: value for key, value in equals.items() if value is not None}
            )
            if name == "negotiations" and farm_id is not None:
                documents = [d for d in documents if farm_id in (d.get("farm_ids") or ())]
            items = [shown(principal, name, d) for d in documents if visible(principal, name, d)]
            response.headers[POSITION_HEADER] = str(position)
            return {"position": position, "count": len(items), "items": items}

        api.add_api_route(
            f"/{name}",
            list_documents,
            methods=["GET"],
            summary=f"List {name} in the caller's scope",
            name=f"list_{name}",
        )

    def add_getter(name: str) -> None:
        async def get_document(
            response: Response,
            principal: Annotated[Principal, Depends(caller)],
            document_id: Annotated[str, Path(max_length=400)],
        ) -> dict[str, Any]:
            if not readable(principal, name):
                forbid("not_in_scope", refusal(principal, name))
            read = models()
            position = await read.position(name)
            document = await read.get(name, document_id)
            if document is None:
                refuse(
                    status.HTTP_404_NOT_FOUND,
                    f"unknown_{_SINGULAR[name]}",
                    f"no {_SINGULAR[name]} {document_id} (read model at position {position})",
                )
            if not visible(principal, name, document):
                forbid(
                    "not_in_scope", f"{_SINGULAR[name]} {document_id} is not in this key's scope"
                )
            response.headers[POSITION_HEADER] = str(position)
            return shown(principal, name, document)

        api.add_api_route(
            f"/{name}/{{document_id:path}}",
            get_document,
            methods=["GET"],
            summary=f"One {_SINGULAR[name]}, if in the caller's scope",
            name=f"get_{_SINGULAR[name]}",
            responses=errors(404),
        )

    for name in PROJECTIONS:
        add_lister(name)
        add_getter(name)
    return api
