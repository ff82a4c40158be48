"""``hero price`` as a user runs it: pure arithmetic, so no stack and no data dir.

The figures are worked by hand in tests/unit/test_pricing_policies.py:
small VM (2 vCPU / 4 GB / 50 GB SSD) on genesis: CU 1, SU 0.25, 0.01125 USD/h, 8.1 USD/month.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._cli import hero

pytestmark = pytest.mark.e2e

SMALL = ("--cru", "2", "--mru-gb", "4", "--sru-gb", "50")
FULL_NODE = ("--cru", "64", "--mru-gb", "256", "--sru-gb", "4000", "--hru-gb", "12000")


def price_json(*args: str) -> dict[str, Any]:
    result = hero("price", *args, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def refused(*args: str) -> str:
    result = hero("price", *args)
    assert result.returncode == 2, result.stderr + result.stdout
    return " ".join(result.stderr.split())  # rich wraps long lines


def test_the_table_shows_units_and_prices():
    result = hero("price", *SMALL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 vCPU, 4 GB RAM, 50 GB SSD, pricing policy genesis" in out
    for row in (
        ("CU", "1"),
        ("SU", "0.25"),
        ("USD per hour", "0.01125 USD"),
        ("USD per month (720 h)", "8.1 USD"),
    ):
        line = next(line for line in out.splitlines() if f" {row[0]} " in line)
        assert row[1] in line, out


def test_the_table_shows_the_factors_applied():
    # manual, certified, dedicated: 2.53904 * 0.5 * 1.25 = 1.5869 an hour, 1142.568 a month
    result = hero("price", *FULL_NODE, "--policy", "manual", "--certified", "--dedicated")
    assert result.returncode == 0, result.stderr
    assert "x0.5 on compute and storage" in result.stdout
    assert "x1.25" in result.stdout
    assert "1.5869 USD" in result.stdout
    assert "1142.568 USD" in result.stdout


def test_json_has_the_exact_figures_as_strings():
    data = price_json(*SMALL)
    assert data["policy"] == "genesis"
    assert data["resources"] == {
        "cru": 2,
        "mru_gb": "4",
        "sru_gb": "50",
        "hru_gb": "0",
        "ipv4": 0,
    }
    assert (data["cu"], data["su"]) == ("1", "0.25")
    assert data["breakdown_hour"] == {
        "compute": "0.01",
        "storage": "0.00125",
        "ipv4": "0",
        "network": "0",
    }
    assert data["factors"] == {"certified": "1", "dedicated": "1", "discount": "1"}
    assert Decimal(data["usd_hour"]) == Decimal("0.01125")
    assert Decimal(data["usd_month"]) == Decimal("8.1")
    assert data["hours_per_month"] == 720


@pytest.mark.parametrize(
    ("args", "hour", "month"),
    [
        # manual: 0.03056 + 0.25 * 0.01944 = 0.03542; * 720 = 25.5024
        ((*SMALL, "--policy", "manual"), "0.03542", "25.5024"),
        # two IPv4 on genesis: 0.01125 + 0.008 = 0.01925; * 720 = 13.86
        ((*SMALL, "--ipv4", "2"), "0.01925", "13.86"),
        # certified: 0.01125 * 1.25 = 0.0140625; * 720 = 10.125
        ((*SMALL, "--certified"), "0.0140625", "10.125"),
        # full node rented: (0.64 + 0.15) * 0.5 = 0.395; * 720 = 284.4
        ((*FULL_NODE, "--dedicated"), "0.395", "284.4"),
        # 1000 GB HDD certified, rounded once: 5/6 * 0.005 * 1.25 -> 0.0052083; month 3.75
        (("--hru-gb", "1000", "--certified"), "0.0052083", "3.75"),
    ],
    ids=["manual", "ipv4", "certified", "dedicated", "rounded_once"],
)
def test_json_prices(args, hour, month):
    data = price_json(*args)
    assert (data["usd_hour"], data["usd_month"]) == (hour, month)


def test_a_custom_policy_from_a_toml_file(tmp_path: Path):
    path = tmp_path / "policies.toml"
    path.write_text(
        "[[policies]]\n"
        'name = "cheap"\n'
        'cu_hour = { amount = "0.02", currency = "USD" }\n'
        'su_hour = { amount = "0.01", currency = "USD" }\n'
        'nu_gb = { amount = "0.001", currency = "USD" }\n'
        'ipv4_hour = { amount = "0.003", currency = "USD" }\n'
        'unique_name_hour = { amount = "0.0002", currency = "USD" }\n'
    )
    # 1 * 0.02 + 0.25 * 0.01 = 0.0225; * 720 = 16.2
    data = price_json(*SMALL, "--policy", "cheap", "--policies-file", str(path))
    assert data["policy"] == "cheap"
    assert (data["usd_hour"], data["usd_month"]) == ("0.0225", "16.2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cru", "-1"), "--cru cannot be negative, got -1"),
        (("--mru-gb", "-4"), "--mru-gb cannot be negative, got -4"),
        (("--sru-gb", "lots"), "--sru-gb must be a number of GB, got 'lots'"),
        (("--ipv4", "-2"), "--ipv4 cannot be negative, got -2"),
        (
            ("--policy", "premium"),
            "--policy: unknown pricing policy 'premium'; known: genesis, manual",
        ),
    ],
    ids=["cru", "mru", "sru", "ipv4", "policy"],
)
def test_bad_input_exits_2_naming_the_option(args, message):
    assert message in refused(*SMALL, *args)


def test_a_bad_policies_file_names_the_option_the_file_and_the_field(tmp_path: Path):
    path = tmp_path / "bad.json"
    entry = {
        "name": "tft",
        "cu_hour": {"amount": "0.5", "currency": "TFT"},
        "su_hour": {"amount": "0.01", "currency": "USD"},
        "nu_gb": {"amount": "0.001", "currency": "USD"},
        "ipv4_hour": {"amount": "0.003", "currency": "USD"},
        "unique_name_hour": {"amount": "0.0002", "currency": "USD"},
    }
    path.write_text(json.dumps({"policies": [entry]}))
    message = refused(*SMALL, "--policy", "tft", "--policies-file", str(path))
    assert "--policies-file:" in message
    assert str(path) in message
    assert "policies[0] (tft).cu_hour: prices must be in USD, got TFT" in message
