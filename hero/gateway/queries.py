"""REST queries over the read models in Valkey, filtered by the caller's scope.

``GET /v1/{farms,nodes,contracts,negotiations,workloads,accounts}`` lists, ``/{id}`` reads
one document. Lists take the filters ``farm_id``, ``offtaker_id``, ``grid`` and ``status``
(equality; ``farm_id`` of a negotiation matches any farm that is a party to it), and page:
``limit`` (default 100, at most 1000) documents by id, after the opaque ``cursor`` of the
previous page. They answer ``{"position", "count", "items", "next_cursor"}``: ``count`` is the
page's, ``next_cursor`` is None on the last page, and a cursor this gateway did not hand out for
that list is 400 ``invalid_cursor``. ``position`` (also the ``X-Hero-Position`` header) is the
log position the projection had applied when the page was read. The scope rules are in
:mod:`hero.gateway.scopes`: a projection a role may not read is 403, a document outside the
caller's tenants is 403 when asked by id and left out of lists.

Every list and read takes ``as_of``, a log position or an ISO-8601 time with its zone: the
documents as they were then, folded from the log by the same projections
(:mod:`hero.readmodels.as_of`) and scoped and masked the same way; ``position`` is then the
position of the cut. An ``as_of`` that is neither is 400 ``invalid_as_of``, a position past
the log's head 400 ``as_of_past_head``. See docs/architecture.md ("Time travel").
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status

from hero.gateway._openapi import KEYED, KEYED_SECURITY, errors
from hero.gateway._paging import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, decode_cursor
from hero.gateway._paging import page_of as _page_of
from hero.gateway.auth import caller, forbid, refuse
from hero.gateway.context import GatewayContext, Principal, Role
from hero.gateway.offtakers import directory_for
from hero.gateway.redaction import Pseudonyms
from hero.gateway.scopes import PROJECTIONS, readable, refusal, shown, visible
from hero.readmodels.as_of import AsOfReadModels
from hero.store.as_of import MAX_AS_OF_CHARS, AsOfError, AsOfPastHead, resolve_as_of
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
Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"documents per page (at most {MAX_LIMIT})")
]
Cursor = Annotated[
    str | None,
    Query(description="the previous page's next_cursor (opaque)"),
]
AsOf = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_AS_OF_CHARS,
        description="the documents as they were at this log position, or at this time"
        " (ISO 8601 with its zone); a position past the log's head is 400 as_of_past_head",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]{1,19}$"},
                {
                    "type": "string",
                    "format": "date-time",
                    "pattern": "^[0-9]{4}-",
                    "minLength": 20,
                    "maxLength": MAX_AS_OF_CHARS,
                },
            ]
        },
    ),
]
#: The refusals of a list besides the caller's (declared for the OpenAPI document): a cursor
#: not handed out here, or an as_of that names no moment of the log.
LIST_RESPONSES: dict[int | str, dict[str, Any]] = errors(400)


def _after(name: str, cursor: str | None) -> str | None:
    if cursor is None:  # an empty one is refused: not a cursor handed out
        return None
    try:
        return decode_cursor(name, cursor)
    except BadCursor as bad:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail={"error": "invalid_cursor", "message": f"cursor: {bad}", "field": "cursor"},
        ) from None


def _check_filters(principal: Principal, farm_id: str | None, offtaker_id: str | None) -> None:
    """A filter naming someone else's farm or offtaker is a refusal, not an empty list."""
    if principal.role == Role.FARMER and farm_id is not None and farm_id not in principal.tenants:
        forbid("not_your_farm", f"farm {farm_id} is not one of this key's farms")
    if principal.role == Role.OFFTAKER and offtaker_id not in (None, *principal.tenants):
        forbid("not_your_offtaker", f"this key is not offtaker {offtaker_id}'s")
    if principal.role == Role.DEVELOPER and offtaker_id is not None:
        forbid("private_field", "developer keys do not see offtakers' ids")


def _asked(principal: Principal, document_id: str, masks: Pseudonyms) -> str | None:
    """The id a key asks for, as the read models key it. A developer asks by the masked id it
    was shown (``offtaker-<hex>.web.1``); an id that names an offtaker itself finds nothing
    (None; an answer would confirm who the offtaker is)."""
    if principal.role != Role.DEVELOPER:
        return document_id
    if masks.names_an_offtaker(document_id):
        return None
    return masks.unmask(document_id)


def _as_of_refused(error: AsOfError) -> HTTPException:
    code = "as_of_past_head" if isinstance(error, AsOfPastHead) else "invalid_as_of"
    detail = {"error": code, "message": str(error), "field": "as_of"}
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=detail)


def _id_of(document: dict[str, Any]) -> str:
    return str(document.get("id", ""))


def router(context: GatewayContext) -> APIRouter:
    api = APIRouter(
        prefix="/v1", tags=["queries"], dependencies=KEYED_SECURITY, responses=errors(*KEYED)
    )

    def models() -> ReadModelsPort:
        port: ReadModelsPort = context.extras["read_models"]
        return port

    async def models_as_of(as_of: str | None) -> ReadModelsPort:
        """The live read models, or with ``as_of`` the same projections folded from the log
        as it was then (one fold per projection and position, kept for the next request)."""
        if as_of is None:
            return models()
        try:
            cut = await asyncio.to_thread(resolve_as_of, context.store, as_of)
        except AsOfError as error:
            raise _as_of_refused(error) from None
        folds = context.extras.get("as_of_read_models")
        if not isinstance(folds, AsOfReadModels):
            folds = context.extras["as_of_read_models"] = AsOfReadModels(context.store)
        return folds.at(cut.position)

    async def pseudonyms(principal: Principal) -> Pseudonyms:
        """The offtakers' pseudonyms; for a developer, with every offtaker of the log so far
        learned (the read models follow the same log)."""
        directory = directory_for(context)
        if principal.role != Role.DEVELOPER:
            return directory.pseudonyms
        return await directory.ensure()

    def add_lister(name: str) -> None:
        async def list_documents(
            response: Response,
            principal: Annotated[Principal, Depends(caller)],
            farm_id: FilterId = None,
            offtaker_id: FilterId = None,
            grid: FilterWord = None,
            status_: Annotated[FilterWord, Query(alias="status")] = None,
            limit: Limit = DEFAULT_LIMIT,
            cursor: Cursor = None,
            as_of: AsOf = None,
        ) -> dict[str, Any]:
            if not readable(principal, name):
                forbid("not_in_scope", refusal(principal, name))
            _check_filters(principal, farm_id, offtaker_id)
            after = _after(name, cursor)
            equals = {"offtaker_id": offtaker_id, "grid": grid, "status": status_}
            if name != "negotiations":
                equals["farm_id"] = farm_id
            read = await models_as_of(as_of)
            position = await read.position(name)
            documents = await read.all(
                name, **{key: value for key, value in equals.items() if value is not None}
            )
            if name == "negotiations" and farm_id is not None:
                documents = [d for d in documents if farm_id in (d.get("farm_ids") or ())]
            masks = await pseudonyms(principal)
            # Paged over what the key is shown, so a developer's cursor holds masked ids only.
            mine = [
                shown(principal, name, d, masks) for d in documents if visible(principal, name, d)
            ]
            mine.sort(key=_id_of)
            page = _page_of(name, mine, _id_of, limit=limit, after=after)
            items = page.items
            response.headers[POSITION_HEADER] = str(position)
            return {
                "position": position,
                "count": len(items),
                "items": items,
                "next_cursor": page.next_cursor,
            }

        api.add_api_route(
            f"/{name}",
            list_documents,
            methods=["GET"],
            summary=f"List {name} in the caller's scope, a page at a time",
            name=f"list_{name}",
            responses=LIST_RESPONSES,
        )

    def add_getter(name: str) -> None:
        async def get_document(
            response: Response,
            principal: Annotated[Principal, Depends(caller)],
            document_id: Annotated[str, Path(max_length=400)],
            as_of: AsOf = None,
        ) -> dict[str, Any]:
            if not readable(principal, name):
                forbid("not_in_scope", refusal(principal, name))
            read = await models_as_of(as_of)
            position = await read.position(name)
            masks = await pseudonyms(principal)
            key = _asked(principal, document_id, masks)
            document = None if key is None else await read.get(name, key)
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
            return shown(principal, name, document, masks)

        api.add_api_route(
            f"/{name}/{{document_id:path}}",
            get_document,
            methods=["GET"],
            summary=f"One {_SINGULAR[name]}, if in the caller's scope",
            name=f"get_{_SINGULAR[name]}",
            responses=errors(400, 404),
        )

    for name in PROJECTIONS:
        add_lister(name)
        add_getter(name)
    return api
