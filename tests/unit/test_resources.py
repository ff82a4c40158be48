"""Resources: cores, bytes (TFChain's GB is 1024**3 bytes) and public IPv4 addresses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas import GIB, Resources


def test_gib_is_1024_cubed():
    assert GIB == 1024**3 == 1_073_741_824


def test_from_gb_counts_1024_cubed_bytes_per_gb():
    resources = Resources.from_gb(cru=2, mru_gb=4, sru_gb=50, hru_gb=1000, ipv4=1)
    assert resources == Resources(
        cru=2, mru=4 * 1024**3, sru=50 * 1024**3, hru=1000 * 1024**3, ipv4=1
    )


def test_from_gb_accepts_fractional_strings_and_decimals():
    assert Resources.from_gb(mru_gb="0.5").mru == 512 * 1024**2
    assert Resources.from_gb(sru_gb=Decimal("0.25")).sru == 256 * 1024**2


def test_from_gb_refuses_floats():
    with pytest.raises(TypeError, match="float"):
        Resources.from_gb(mru_gb=0.5)  # type: ignore[arg-type]


def test_from_gb_refuses_negative_sizes():
    with pytest.raises(ValidationError, match="mru"):
        Resources.from_gb(mru_gb=-1)


def test_gb_properties_convert_back_exactly():
    resources = Resources.from_gb(mru_gb="1.5", sru_gb=100, hru_gb="0.25")
    assert resources.mru_gb == Decimal("1.5")
    assert resources.sru_gb == Decimal(100)
    assert resources.hru_gb == Decimal("0.25")


def test_defaults_are_all_zero():
    empty = Resources()
    assert (empty.cru, empty.mru, empty.sru, empty.hru, empty.ipv4) == (0, 0, 0, 0, 0)


def test_negative_counts_are_refused():
    with pytest.raises(ValidationError, match="cru"):
        Resources(cru=-1)


def test_add_sums_every_part():
    a = Resources(cru=1, mru=2, sru=3, hru=4, ipv4=5)
    b = Resources(cru=10, mru=20, sru=30, hru=40, ipv4=50)
    assert a + b == Resources(cru=11, mru=22, sru=33, hru=44, ipv4=55)


def test_sub_subtracts_every_part():
    a = Resources(cru=11, mru=22, sru=33, hru=44, ipv4=55)
    b = Resources(cru=10, mru=20, sru=30, hru=40, ipv4=50)
    assert a - b == Resources(cru=1, mru=2, sru=3, hru=4, ipv4=5)
    assert a - a == Resources()


@pytest.mark.parametrize("part", ["cru", "mru", "sru", "hru", "ipv4"])
def test_sub_below_zero_raises_a_value_error_naming_the_part(part):
    with pytest.raises(ValueError, match=part) as raised:
        Resources() - Resources(**{part: 1})
    assert isinstance(raised.value, ValidationError)


def test_fits_in_needs_every_part_to_fit():
    node = Resources(cru=8, mru=16 * GIB, sru=500 * GIB, hru=0, ipv4=1)
    assert Resources(cru=8, mru=16 * GIB, sru=500 * GIB, ipv4=1).fits_in(node)
    assert Resources().fits_in(node)
    assert not Resources(cru=9).fits_in(node)
    assert not Resources(mru=16 * GIB + 1).fits_in(node)
    assert not Resources(sru=501 * GIB).fits_in(node)
    assert not Resources(hru=1).fits_in(node)
    assert not Resources(ipv4=2).fits_in(node)


def test_times_scales_every_part():
    replica = Resources(cru=2, mru=3, sru=4, hru=5, ipv4=1)
    assert replica.times(3) == Resources(cru=6, mru=9, sru=12, hru=15, ipv4=3)
    assert replica.times(0) == Resources()


def test_times_refuses_a_negative_count():
    with pytest.raises(ValueError, match="cru"):
        Resources(cru=1).times(-1)


def test_resources_are_immutable():
    resources = Resources(cru=1)
    with pytest.raises(ValidationError):
        resources.cru = 2  # type: ignore[misc]
