"""The algorithms: CR-PSGD (Algorithm 1), CR-PSGD-Catalyst (Algorithm 2) and the baselines, registered by name."""

from .base import ALGORITHMS, Algorithm, Setting, register_algorithm
from .catalyst import Catalyst, catalyst_counts
from .cr_psgd import CRPSGD
from .local_sgd import LocalSGD, resolve_period
from .psgd import PSGD

__all__ = ["ALGORITHMS", "Algorithm", "CRPSGD", "Catalyst", "LocalSGD", "PSGD", "Setting", "catalyst_counts",
           "register_algorithm", "resolve_period"]
