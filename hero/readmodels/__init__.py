"""Read models: state folded from the log and kept in Valkey/Redis for queries."""

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
