"""The embedded local stack: a broker (Tansu, or Apache Kafka with ``HERO_BROKER=kafka``),
Valkey, a Ray head, the relay, the treasury, the usage worker, the gateway and the agent hosts.

Start with :class:`LocalStack` (``up``/``down``/``status``/``endpoints``); the single
servers in :mod:`infra.processes` are usable on their own in tests.

The launcher: the outermost layer.
See docs/architecture.md for the layers and the flow of one command.
"""

from infra.errors import ComponentError, StackError
from infra.gateway import GATEWAY_COMMAND, GatewayProcess
from infra.hero_processes import AGENTS_COMMAND, RELAY_COMMAND, AgentsProcess, RelayProcess
from infra.kafka import KafkaProcess
from infra.local import COMPONENTS, LocalStack
from infra.models import ComponentStatus, Endpoints, UpReport
from infra.processes import BrokerProcess, ManagedProcess, ValkeyProcess
from infra.ray_client import configure_ray_client
from infra.ray_head import RayHead
from infra.treasury import TREASURY_COMMAND, TreasuryProcess
from infra.usage import USAGE_COMMAND, UsageProcess

__all__ = [
    "AGENTS_COMMAND",
    "COMPONENTS",
    "GATEWAY_COMMAND",
    "RELAY_COMMAND",
    "TREASURY_COMMAND",
    "USAGE_COMMAND",
    "AgentsProcess",
    "BrokerProcess",
    "ComponentError",
    "ComponentStatus",
    "Endpoints",
    "GatewayProcess",
    "KafkaProcess",
    "LocalStack",
    "ManagedProcess",
    "RayHead",
    "RelayProcess",
    "StackError",
    "TreasuryProcess",
    "UpReport",
    "UsageProcess",
    "ValkeyProcess",
    "configure_ray_client",
]
