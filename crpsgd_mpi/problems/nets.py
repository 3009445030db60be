"""ResNet20 and a small convnet, initialised from our seed streams without touching torch's global RNG."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..seeding import Stream, rng_for

Seed = int | torch.Generator


def generator_for(seed: Seed) -> torch.Generator:
    """A CPU torch.Generator: `seed` itself if it is one, else seeded with a 63-bit integer drawn from
    the INIT stream of the seed root `seed`."""
    if isinstance(seed, torch.Generator):
        return seed
    value = int(rng_for(seed, Stream.INIT).integers(0, 2**63, dtype="int64"))
    return torch.Generator(device="cpu").manual_seed(value)


@torch.no_grad()
def init_parameters(model: nn.Module, seed: Seed) -> nn.Module:
    """Re-initialise every parameter and BatchNorm buffer of `model` from one generator, in module order:
    conv weights Kaiming normal (fan_in, ReLU gain), conv biases 0; linear layers as torch does by default
    (weight and bias uniform in +-1/sqrt(fan_in)); BatchNorm weight 1, bias 0, running mean 0, variance 1.
    A module type with parameters not listed raises TypeError (no parameter is left to another init)."""
    gen = generator_for(seed)
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=gen)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Linear):
            bound = module.in_features ** -0.5
            module.weight.uniform_(-bound, bound, generator=gen)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=gen)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            if module.affine:
                module.weight.fill_(1.0)
                module.bias.zero_()
            if module.track_running_stats:
                module.reset_running_stats()
        elif own:
            raise TypeError(f"init_parameters does not know how to initialise {type(module).__name__}")
    return model


def _built(factory: Callable[[], nn.Module], seed: Seed) -> nn.Module:
    """factory() built on the meta device (torch's default init would draw from the global RNG), then
    given CPU storage and initialised from `seed`."""
    with torch.device("meta"):
        model = factory()
    return init_parameters(model.to_empty(device="cpu"), seed)


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A shortcut: identity, or for a stride-2 block the input
    subsampled by 2 and zero-padded in channels (no parameters)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016, section 4.2): 6n+2 layers, widths 16/32/64, global average
    pooling and a linear classifier."""

    def __init__(self, n: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks: list[nn.Module] = []
        c_in = 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(_BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


def resnet20(num_classes: int = 10, in_channels: int = 3, seed: Seed = 0) -> nn.Module:
    """ResNet20 (n = 3): 269,722 parameters for 3-channel input and 10 classes; initialised from `seed`."""
    return _built(lambda: ResNet(3, num_classes, in_channels), seed)


class SmallCNN(nn.Module):
    """Three 3x3 conv layers (16, 32, 32 channels; the first followed by BatchNorm unless batchnorm=False),
    two 2x2 max-pools, global average pooling and a linear classifier; any input size of at least 4x4."""

    def __init__(self, num_classes: int, in_channels: int, batchnorm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=not batchnorm)
        self.bn1: nn.Module = nn.BatchNorm2d(16) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        out = F.relu(self.conv3(out))
        return self.fc(out.mean(dim=(2, 3)))


def cnn(num_classes: int = 10, in_channels: int = 3, batchnorm: bool = True, seed: Seed = 0) -> nn.Module:
    """The small convnet (14,682 parameters for 3-channel input and 10 classes; 14,666 without BatchNorm)."""
    return _built(lambda: SmallCNN(num_classes, in_channels, batchnorm), seed)
