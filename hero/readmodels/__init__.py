"""Read models: state folded from the log and kept in Valkey/Redis for queries.

The only adapter of Valkey/Redis; it sits below the gateway.
See docs/architecture.md for the layers and the flow of one command.
"""

from hero.readmodels.projections import PROJECTIONS, Doc, Projection, UnknownProjection, fold
from hero.readmodels.projector import DEFAULT_PREFIX, Projector, ReadModels, RebuildReport

__all__ = [
    "DEFAULT_PREFIX",
    "PROJECTIONS",
    "Doc",
    "Projection",
    "Projector",
    "ReadModels",
    "RebuildReport",
    "UnknownProjection",
    "fold",
]
