"""The synthetic generator: Gaussian features with geometric variances, labels of a planted linear model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..arith import dot, row_dots
from ..limits import FIXED_VECTORS, VECTORS_PER_WORKER, Need
from ..seeding import Stream, rng_for
from .base import Matrix, Source

if TYPE_CHECKING:
    from ..config import Config

SYNTHETIC_BLOCK = 4096


class SyntheticSource(Source):
    """Gaussian features with geometric variances, labels from a planted linear model with flips.

    Row i depends only on (data_seed, i // 4096): the data never depends on N or on the run seed.
    Feature j has standard deviation condition^(-j / (2 (d-1))), so the feature covariance has
    condition number `condition`. The planted weight w* ~ N(0, I) is scaled so that a·w* has unit
    standard deviation times 3; y = sign(a·w*), flipped with probability `label_noise`.
    """

    name = "synthetic"

    def __init__(self, samples: int, features: int, condition: float, label_noise: float, data_seed: int) -> None:
        self.samples, self.features = samples, features
        self.condition, self.label_noise, self.data_seed = condition, label_noise, data_seed
        exps = np.arange(features) / max(features - 1, 1)
        # the C library's pow, one value at a time: numpy's AVX-512 power rounds differently
        self.scales = np.array([math.pow(condition, -0.5 * e) for e in exps.tolist()])
        w = rng_for(data_seed, Stream.SYNTHETIC_WEIGHTS).standard_normal(features)
        self.w_star = 3.0 * w / math.sqrt(dot(w * self.scales, w * self.scales))

    @property
    def n_rows(self) -> int:
        return self.samples

    def size_options(self, cfg: Config) -> tuple[tuple[str, object], tuple[str, object]]:
        return ("samples", self.samples), ("features", self.features)

    def working_needs(self) -> list[Need]:
        return [_blocks_need(self.features)]

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        start = b * SYNTHETIC_BLOCK
        m = min(SYNTHETIC_BLOCK, self.samples - start)
        rng = rng_for(self.data_seed, Stream.SYNTHETIC_ROWS, b)
        X = rng.standard_normal((m, self.features)) * self.scales
        y = np.where(row_dots(X, self.w_star) >= 0, 1.0, -1.0)
        flip = rng.random(m) < self.label_noise
        y[flip] = -y[flip]
        return X, y

    def rows(self, index: np.ndarray, intercept: bool = False) -> tuple[Matrix, np.ndarray]:
        """Rows `index` (any order): each 4096-row block they touch is generated once, whatever their number."""
        f = self.features
        X = np.empty((index.size, f + intercept))
        if intercept:
            X[:, f] = 1.0
        y = np.empty(index.size)
        blocks = index // SYNTHETIC_BLOCK
        order = np.argsort(blocks, kind="stable")
        present, starts = np.unique(blocks[order], return_index=True)
        ends = np.append(starts[1:], order.size)
        for b, lo, hi in zip(present.tolist(), starts.tolist(), ends.tolist()):
            Xb, yb = self._block(b)
            sel = order[lo:hi]
            local = index[sel] - b * SYNTHETIC_BLOCK
            X[sel, :f] = Xb[local]
            y[sel] = yb[local]
        return X, y

    def fingerprint(self) -> str:
        return f"synthetic-{self.samples}-{self.features}-{self.condition!r}-{self.label_noise!r}-{self.data_seed}"


def _blocks_need(features: int) -> Need:
    return Need("features", features, 3 * 8.0 * SYNTHETIC_BLOCK * features,
                f"the generator's blocks (3 x {SYNTHETIC_BLOCK} rows x {features} features x 8 bytes)")


def fixed_needs(cfg: Config) -> list[Need]:
    """What a synthetic run needs whatever N, known from the configuration alone (checked when it is made): the row
    permutation, the model-sized vectors, the generator's blocks."""
    d = cfg.features + cfg.intercept
    vectors = FIXED_VECTORS + VECTORS_PER_WORKER + 1
    return [
        Need("samples", cfg.samples, 8.0 * cfg.samples, f"the row permutation ({cfg.samples} rows x 8 bytes)"),
        Need("features", cfg.features, 8.0 * vectors * d, f"model-sized vectors ({vectors} vectors of {d} x 8 bytes)"),
        _blocks_need(cfg.features),
    ]
