"""Baseline: classical data-parallel SGD with a fixed batch, one round per step."""

from __future__ import annotations

from ..config import Config
from ..errors import InputError
from ..schedules import Constant
from .base import Setting, register_algorithm
from .cr_psgd import CRPSGD


@register_algorithm("psgd")
class PSGD(CRPSGD):
    """Fixed-batch data-parallel SGD (--batch-size): floor(T / B) steps of one round each.

    Every worker averages B stochastic gradients at x, one round averages them over the workers,
    x <- x - gamma g. Returns the last iterate. (CR-PSGD with a constant schedule.)
    """

    owns = ("batch_size", "gamma")

    @classmethod
    def check(cls, cfg: Config, n_workers: int) -> None:
        if cfg.batch_size > cfg.T:
            raise InputError("batch_size", cfg.batch_size, f"must be <= T ({cfg.T}), or no round fits the budget")

    @classmethod
    def largest_batch(cls, cfg: Config, n_workers: int) -> tuple[int, str]:
        return cfg.batch_size, "batch_size"

    @classmethod
    def create(cls, setting: Setting) -> PSGD:
        cfg = setting.cfg
        return cls(cfg.T, Constant(cfg.batch_size), setting.step("gamma", cfg.gamma, lambda L: 1.0 / L))
