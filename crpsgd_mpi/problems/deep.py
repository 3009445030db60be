"""Deep networks as problems (PyTorch, the optional extra `[torch]`): ResNet20 and a small convnet on image data,
each seen by the algorithms as one flat float32 vector.

BatchNorm under data parallelism (our decision; the paper is silent): every worker normalises its minibatch with
that minibatch's own statistics (per-worker batch statistics, as each GPU of a data-parallel job does) and updates
its own running statistics; at every round the running statistics are averaged over the workers in the same
collective as the gradients (or models), so they count in the round's bytes, and every evaluation uses the averaged
statistics (eval mode). The same holds under both backends, bit for bit."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..config import Config
from ..data.images import ImageSource, load_images
from ..data.loading import shard_bounds
from ..errors import InputError
from ..ledger import EvalBudget, evaluation_budget
from ..registry import DATASETS, Setting
from .base import Problem, register_problem
from .regularizers import make_regularizer

if TYPE_CHECKING:  # torch is imported when a network is built, not with this module
    from torch import nn


def image_source(cfg: Config) -> ImageSource:
    """The image form of the data set --dataset names (a registered data set's `images` answer: fashion-mnist[:DIR],
    cifar10:DIR, or a plug-in's)."""
    name, _, arg = cfg.dataset.partition(":")
    images = DATASETS.answer(name, "images", None) if name in DATASETS else None
    if images is None:
        which = [n for n in DATASETS.names() if DATASETS.answer(n, "images", None) is not None]
        raise InputError("dataset", cfg.dataset, f"model {cfg.model!r} needs an image data set: {' or '.join(which)}")
    source = images(Setting(cfg, argument=arg or None))
    if not isinstance(source, ImageSource):
        raise InputError("dataset", cfg.dataset, f"its images answer returned {type(source).__name__}, not an "
                                                 "ImageSource")
    return source


class NetProblem(Problem):
    """The cross-entropy of a classifier network over the workers' images; x is the network's parameters."""

    dtype = np.dtype(np.float32)
    evaluates_gradient = False
    estimates_smoothness = False

    def __init__(self, cfg: Config, n_workers: int, workers: range, name: str,
                 build: Callable[[int, int, int], nn.Module]) -> None:
        import torch

        from .torchnet import FlatModel

        torch.set_num_threads(1)  # one thread per rank (and the same bits in every process: see the module)
        self.name = name
        source = image_source(cfg)
        # the evaluations' size: what the configuration sets, the rest from the run's size (ledger.evaluation_budget)
        self.budget: EvalBudget = evaluation_budget(cfg.T, n_workers, source.n_rows("train"), source.n_rows("test"),
                                                    cfg.eval_points, cfg.eval_samples, cfg.test_samples)
        self.shards = load_images(source, cfg.seed, n_workers, workers, self.budget.test_samples)
        self.flat = FlatModel(build(self.shards.classes, self.shards.shape[0], cfg.seed), device=cfg.device)
        self.dim, self.n_samples, self.data_name = self.flat.dim, self.shards.n_train, self.shards.name
        self.shard_sizes = [labels.size for _, labels in self.shards.train]
        self._x0 = self.flat.params.copy()
        self._buffers = np.tile(self.flat.get_buffers(), (len(self.shard_sizes), 1))
        self.reg = make_regularizer(cfg.regularizer, cfg.lam)
        per_worker = math.ceil(self.budget.eval_samples / n_workers)
        self._eval_rows = [min(size, per_worker) for size in self.shard_sizes]
        bounds = shard_bounds(self.n_samples, n_workers)
        self._eval_total = int(sum(min(b - a, per_worker) for a, b in zip(bounds[:-1], bounds[1:])))

    def initial_point(self) -> np.ndarray:
        return self._x0.copy()

    def gradients(self, models: np.ndarray, batches: np.ndarray, out: np.ndarray) -> None:
        for i, (images, labels) in enumerate(self.shards.train):
            idx = batches[i]
            self.flat.set_buffers(self._buffers[i])
            _, grad = self.flat.loss_and_grad(models[i], images[idx], labels[idx])
            out[i] = grad
            self._buffers[i] = self.flat.get_buffers()

    def loss_sums(self, x: np.ndarray, with_gradient: bool) -> np.ndarray:
        rows = np.empty((len(self.shard_sizes), 1), dtype=np.float64)
        for i, ((images, labels), m) in enumerate(zip(self.shards.train, self._eval_rows, strict=True)):
            self.flat.set_buffers(self._buffers[i])
            rows[i, 0] = self.flat.evaluate(x, images[:m], labels[:m])[0]
        return rows

    @property
    def eval_samples(self) -> int:
        return self._eval_total

    @property
    def test_samples(self) -> int:
        """Test images an evaluation scores, over all workers."""
        return self.shards.test_rows

    def evaluation_settings(self) -> dict[str, int]:
        return {"eval_points": self.budget.eval_points, "eval_samples": self.budget.eval_samples,
                "test_samples": self.budget.test_samples}

    def test_sums(self, x: np.ndarray) -> np.ndarray:
        rows = np.empty((len(self.shard_sizes), 3), dtype=np.float64)
        for i, (images, labels) in enumerate(self.shards.test):
            self.flat.set_buffers(self._buffers[i])
            loss, correct = self.flat.evaluate(x, images, labels)
            rows[i] = loss, correct, labels.size
        return rows

    def regularizer(self, x: np.ndarray) -> float:
        return self.reg.value(x)

    def add_regularizer_grad(self, x: np.ndarray, out: np.ndarray) -> None:
        self.reg.add_grad(x, out)

    def buffers(self) -> np.ndarray | None:
        return self._buffers if self._buffers.shape[1] else None

    def set_buffers(self, mean: np.ndarray) -> None:
        self._buffers[:] = mean

    def fingerprint(self) -> str | None:
        return self.shards.fingerprint

    def describe(self) -> str:
        c, h, w = self.shards.shape
        reg = f"{self.reg.name} lam={self.reg.lam:g}" if self.reg.name != "none" else "no regulariser"
        return (f"{self.data_name} with {self.name} ({self.n_samples} images {c}x{h}x{w}, {self.dim} parameters, "
                f"{reg})")


@register_problem("resnet20", estimates_smoothness=False)
def _resnet20(setting: Setting) -> Problem:
    """ResNet20 (He et al. 2016, the CIFAR variant: 3 stages of 3 basic blocks, 16/32/64 channels, 0.27 M)."""
    from .nets import resnet20

    return NetProblem(setting.cfg, setting.n_workers, setting.local_workers, "resnet20",
                      lambda classes, channels, seed: resnet20(classes, channels, seed=seed))


@register_problem("cnn", estimates_smoothness=False)
def _cnn(setting: Setting) -> Problem:
    """A small convnet (3 conv layers, one BatchNorm, ~15 k parameters) for tests and quick studies."""
    from .nets import cnn

    return NetProblem(setting.cfg, setting.n_workers, setting.local_workers, "cnn",
                      lambda classes, channels, seed: cnn(classes, channels, seed=seed))
