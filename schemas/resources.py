"""Compute resources as TFChain counts them: cores, and bytes for memory and disks."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GIB", "Grid", "Resources"]

#: TFChain divides byte counts by 1024^3 to get "GB" (pallet-smart-contract, cost.rs).
GIB = 1024**3


class Grid(StrEnum):
    GRID3 = "grid3"
    GRID4 = "grid4"


def _gib(value: Decimal | int | str) -> int:
    if isinstance(value, float):
        raise TypeError("sizes in GB must be Decimal, int or str, not float")
    return int(Decimal(value) * GIB)


class Resources(BaseModel):
    """cru in cores; mru, sru, hru in bytes; ipv4 a count of public addresses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cru: int = Field(default=0, ge=0, description="virtual cores")
    mru: int = Field(default=0, ge=0, description="memory, bytes")
    sru: int = Field(default=0, ge=0, description="SSD storage, bytes")
    hru: int = Field(default=0, ge=0, description="HDD storage, bytes")
    ipv4: int = Field(default=0, ge=0, description="public IPv4 addresses")

    @classmethod
    def from_gb(
        cls,
        *,
        cru: int = 0,
        mru_gb: Decimal | int | str = 0,
        sru_gb: Decimal | int | str = 0,
        hru_gb: Decimal | int | str = 0,
        ipv4: int = 0,
    ) -> Resources:
        return cls(cru=cru, mru=_gib(mru_gb), sru=_gib(sru_gb), hru=_gib(hru_gb), ipv4=ipv4)

    @property
    def mru_gb(self) -> Decimal:
        return Decimal(self.mru) / GIB

    @property
    def sru_gb(self) -> Decimal:
        return Decimal(self.sru) / GIB

    @property
    def hru_gb(self) -> Decimal:
        return Decimal(self.hru) / GIB

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cru=self.cru + other.cru,
            mru=self.mru + other.mru,
            sru=self.sru + other.sru,
            hru=self.hru + other.hru,
            ipv4=self.ipv4 + other.ipv4,
        )

    def __sub__(self, other: Resources) -> Resources:
        """Raises ValueError when any part would go below zero."""
        return Resources(
            cru=self.cru - other.cru,
            mru=self.mru - other.mru,
            sru=self.sru - other.sru,
            hru=self.hru - other.hru,
            ipv4=self.ipv4 - other.ipv4,
        )

    @classmethod
    def sum(cls, parts: Iterable[Resources]) -> Resources:
        total = cls()
        for part in parts:
            total = total + part
        return total

    def minus_floored(self, used: Resources) -> Resources:
        """What is left of ``self`` after ``used``, floored at zero per resource (used may
        exceed total, as CPU overprovisioning does on Grid 3)."""
        return Resources(
            cru=max(self.cru - used.cru, 0),
            mru=max(self.mru - used.mru, 0),
            sru=max(self.sru - used.sru, 0),
            hru=max(self.hru - used.hru, 0),
            ipv4=max(self.ipv4 - used.ipv4, 0),
        )

    def fits_in(self, other: Resources) -> bool:
        return (
            self.cru <= other.cru
            and self.mru <= other.mru
            and self.sru <= other.sru
            and self.hru <= other.hru
            and self.ipv4 <= other.ipv4
        )

    def times(self, count: int) -> Resources:
        return Resources(
            cru=self.cru * count,
            mru=self.mru * count,
            sru=self.sru * count,
            hru=self.hru * count,
            ipv4=self.ipv4 * count,
        )
