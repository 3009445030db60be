"""The built-in data sets, registered by name in DATASETS: the synthetic generator, Fashion-MNIST and CIFAR-10. Each
answers what a run asks before it is built: the files it reads (`inputs`), what it needs from the configuration alone
(`fixed_needs`), and its image form for networks (`images`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..registry import DATASETS, Setting
from .base import Source
from .fmnist import FashionMNISTSource
from .images import Cifar10Images, FashionMNISTImages, ImageSource
from .synthetic import SyntheticSource, fixed_needs


def _fmnist_folder(setting: Setting) -> str:
    return setting.argument or setting.cfg.fmnist_dir


def _cifar10_folder(setting: Setting) -> str:
    if not setting.argument:
        raise InputError("dataset", setting.cfg.dataset, "name the folder of the CIFAR-10 files: cifar10:DIR")
    return setting.argument


@DATASETS.register("synthetic", answers={"fixed_needs": fixed_needs, "inputs": lambda setting: []})
def _synthetic(setting: Setting) -> Source:
    """Gaussian features, planted linear labels (--samples, --features, --condition, --label-noise, --data-seed)."""
    cfg = setting.cfg
    return SyntheticSource(cfg.samples, cfg.features, cfg.condition, cfg.label_noise, cfg.data_seed)


@DATASETS.register("fashion-mnist", answers={
    "inputs": lambda setting: [Path(_fmnist_folder(setting))],
    "images": lambda setting: FashionMNISTImages(_fmnist_folder(setting)),
})
def _fashion_mnist(setting: Setting) -> Source:
    """The 60000 Fashion-MNIST training images, binary split (--fmnist-dir, or fashion-mnist:DIR); networks: ten classes."""
    return FashionMNISTSource(_fmnist_folder(setting))


def _cifar10_images(setting: Setting) -> ImageSource:
    return Cifar10Images(_cifar10_folder(setting))


@DATASETS.register("cifar10", answers={
    "inputs": lambda setting: [Path(setting.argument)] if setting.argument else [],
    "images": _cifar10_images,
})
def _cifar10(setting: Setting) -> Source:
    """CIFAR-10 for networks only (cifar10:DIR, the python or binary distribution in DIR)."""
    raise InputError("dataset", setting.cfg.dataset, f"is an image data set: use it with a network (--model "
                                                     f"cnn or resnet20), not --model {setting.cfg.model}")
