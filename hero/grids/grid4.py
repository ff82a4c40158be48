"""An async client of the Grid 4 node registrar (``/api/v1/nodes``, ``/api/v1/farms``).

Assumed, as DOMAIN.md does not say: the lists page like the Grid 3 proxy (``page`` from 1,
``size`` per page) and answer a JSON list (a single list wrapped in an object is accepted);
a ``count`` header is honoured when present, otherwise a short or empty page ends the list.
``base_url`` is the registrar's root (``/api/v1`` is added), or already ends in ``/api/v1``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hero.grids.grid3 import PagedClient
from hero.grids.models import Grid4Farm, Grid4Node

__all__ = ["Grid4Client"]

API = "/api/v1"


class Grid4Client(PagedClient):
    def url(self, path: str) -> str:
        root = self.base_url if self.base_url.endswith(API) else self.base_url + API
        return f"{root}/{path.lstrip('/')}"

    def nodes(self, **filters: Any) -> AsyncIterator[Grid4Node]:
        return self.pages("/nodes", Grid4Node, filters)

    def farms(self, **filters: Any) -> AsyncIterator[Grid4Farm]:
        return self.pages("/farms", Grid4Farm, filters)
