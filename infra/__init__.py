"""The embedded local stack: Tansu broker, Valkey, a Ray head and the relay on 127.0.0.1.

Start with :class:`LocalStack` (``up``/``down``/``status``/``endpoints``); the single
servers in :mod:`infra.processes` are usable on their own in tests.
"""

from infra.errors import ComponentError, StackError
from infra.local import COMPONENTS, LocalStack
from infra.models import ComponentStatus, Endpoints, UpReport
from infra.processes import (
    RELAY_COMMAND,
    BrokerProcess,
    ManagedProcess,
    RayHead,
    RelayProcess,
    ValkeyProcess,
)
from infra.ray_client import configure_ray_client

__all__ = [
    "COMPONENTS",
    "RELAY_COMMAND",
    "BrokerProcess",
    "ComponentError",
    "ComponentStatus",
    "Endpoints",
    "LocalStack",
    "ManagedProcess",
    "RayHead",
    "RelayProcess",
    "StackError",
    "UpReport",
    "ValkeyProcess",
    "configure_ray_client",
]
