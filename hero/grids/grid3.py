"""An async client of the Grid 3 grid proxy (``/nodes``, ``/farms``, ``/contracts``), and the
paging and retrying HTTP machinery the Grid 4 client shares.

Lists are read page by page (``page`` from 1, ``size`` per page, ``ret_count=true``); reading
stops when the total from the ``count`` header is reached, or at a short or empty page.
Server errors (5xx), timeouts and connection errors are retried with exponential backoff a
bounded number of times, then raise :class:`GridUnavailable` naming the URL and the status.
Items that do not parse are skipped and counted (``skipped``), not fatal: one odd node must
not stop an import of thousands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from hero.grids.models import Grid3Contract, Grid3Farm, Grid3Node

__all__ = ["Grid3Client", "GridError", "GridUnavailable", "PagedClient"]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


class GridError(Exception):
    """The grid answered, but not with what was asked (a 4xx, a body that is not a list)."""

    def __init__(self, url: str, status: int | None, detail: str):
        self.url = url
        self.status = status
        super().__init__(f"{url}: {detail}" + (f" (HTTP {status})" if status else ""))


class GridUnavailable(GridError):
    """The grid could not be reached or kept failing after the retries."""

    def __init__(self, url: str, status: int | None, detail: str, attempts: int):
        self.attempts = attempts
        super().__init__(url, status, f"{detail} after {attempts} attempt(s)")


class PagedClient:
    """GETs with retries, and lists read page by page. Owns its ``httpx.AsyncClient`` unless
    one is given."""

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10,
        retries: int = 3,
        page_size: int = 50,
        backoff: float = 0.25,
        max_pages: int = 10_000,
    ):
        if retries < 0 or page_size < 1 or timeout <= 0:
            raise ValueError("retries must be >= 0, page_size >= 1 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.page_size = page_size
        self.backoff = backoff
        self.max_pages = max_pages
        self.skipped = 0
        self._owned = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """GET, retrying 5xx, timeouts and connection errors; a 4xx raises at once."""
        url = self.url(path)
        attempts = self.retries + 1
        status: int | None = None
        detail = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.get(url, params=params, timeout=self._timeout)
            except httpx.TimeoutException:
                status, detail = None, f"timed out after {self._timeout} s"
            except httpx.TransportError as error:
                status, detail = None, f"cannot connect ({type(error).__name__}: {error})"
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise GridError(url, response.status_code, response.text[:200] or "refused")
                status, detail = response.status_code, "server error"
            log.warning("GET %s failed (%s), attempt %d of %d", url, detail, attempt + 1, attempts)
        raise GridUnavailable(url, status, detail, attempts)

    async def pages(
        self, path: str, model: type[M], filters: Mapping[str, Any] | None = None
    ) -> AsyncIterator[M]:
        """Every item of a paged list, parsed as ``model``."""
        seen = 0
        for page in range(1, self.max_pages + 1):
            params = {
                **{k: _param(v) for k, v in (filters or {}).items() if v is not None},
                "page": page,
                "size": self.page_size,
                "ret_count": "true",
            }
            response = await self.get(path, params)
            items = self._items(response)
            for item in items:
                try:
                    yield model.model_validate(item)
                except ValidationError as error:
                    self.skipped += 1
                    log.warning("skipped an item of %s: %s", path, error.errors()[:1])
            seen += len(items)
            total = _count(response)
            if not items or len(items) < self.page_size or (total is not None and seen >= total):
                return
        raise GridError(self.url(path), None, f"more than {self.max_pages} pages")

    def _items(self, response: httpx.Response) -> list[Any]:
        try:
            body = response.json()
        except ValueError:
            raise GridError(str(response.url), response.status_code, "not JSON") from None
        if isinstance(body, dict):  # a wrapped list: {"nodes": [...]} or {"data": [...]}
            lists = [v for v in body.values() if isinstance(v, list)]
            body = lists[0] if len(lists) == 1 else body
        if not isinstance(body, list):
            raise GridError(str(response.url), response.status_code, "the body is not a list")
        return body


def _param(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _count(response: httpx.Response) -> int | None:
    text = response.headers.get("count")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


class Grid3Client(PagedClient):
    """The grid proxy, e.g. ``https://gridproxy.grid.tf``. Filters are the proxy's query
    parameters (``status="up"``, ``farm_ids="1,2"``, ``healthy=True``...)."""

    def nodes(self, **filters: Any) -> AsyncIterator[Grid3Node]:
        return self.pages("/nodes", Grid3Node, filters)

    def farms(self, **filters: Any) -> AsyncIterator[Grid3Farm]:
        return self.pages("/farms", Grid3Farm, filters)

    def contracts(self, **filters: Any) -> AsyncIterator[Grid3Contract]:
        return self.pages("/contracts", Grid3Contract, filters)
