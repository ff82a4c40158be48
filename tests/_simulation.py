"""A small market twin scenario for the tests of ``hero simulate``: four farms, two
offtakers (one autoscaled on a spiking load), one node failure; a plain dict, as a scenario
file holds it, so a test can break one field."""

from __future__ import annotations

from typing import Any

__all__ = ["small", "usd"]


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def small() -> dict[str, Any]:
    """Four farms, two offtakers (one autoscaled on a spiking load), one node failure
    detected 45 minutes after it happens."""
    shape = {"cru": 2, "mru": 4 * 2**30, "sru": 50 * 2**30}
    return {
        "name": "small",
        "fleet": {
            "farms": 4,
            "nodes_per_farm": [1, 2],
            "regions": {"europe": 1},
            "policies": [
                {"weight": 2, "policy": {"price_cu_hour": usd("0.0306")}},
                {"weight": 1, "policy": {"markup": "1.5", "mode": "approve"}},
                {"weight": 1, "policy": {"markup": "1.2", "max_term_hours": 168}},
            ],
        },
        "offtakers": [
            {
                "offtaker_id": "acme",
                "mandate": {
                    "budget_month": usd("300"),
                    "max_price_cu_hour": usd("0.05"),
                    "offers_per_replica": 6,
                    "workloads": [
                        {
                            "workload_id": "api",
                            "resources": shape,
                            "replicas": 2,
                            "autoscale": {
                                "metric": "cpu",
                                "target": "0.6",
                                "min_replicas": 2,
                                "max_replicas": 4,
                            },
                        }
                    ],
                },
                "traces": {"api": {"kind": "spike", "base": "0.4", "spike_day": 0, "peak_hour": 6}},
            },
            {
                "offtaker_id": "globex",
                "mandate": {
                    "budget_month": usd("200"),
                    "max_price_cu_hour": usd("0.045"),
                    "offers_per_replica": 6,
                    "workloads": [{"workload_id": "db", "resources": shape, "replicas": 2}],
                },
            },
        ],
        # detected 45 minutes late: 0.75 hour down in a contract's first ~28 hours is below
        # the 99 % promised, whichever node the seed fails
        "failures": [{"day": 1, "hour": 3, "repair_hours": 2, "detection_delay_minutes": 45}],
        "sla": {"uptime_pct": "99", "penalty_pct": "50"},
    }
