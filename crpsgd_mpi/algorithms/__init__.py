"""The algorithms: CR-PSGD (Algorithm 1), CR-PSGD-Catalyst (Algorithm 2) and the baselines."""

from .base import Algorithm
from .catalyst import Catalyst, catalyst_counts
from .cr_psgd import CRPSGD
from .local_sgd import LocalSGD, resolve_period
from .psgd import PSGD

__all__ = ["Algorithm", "CRPSGD", "Catalyst", "LocalSGD", "PSGD", "catalyst_counts", "resolve_period"]
