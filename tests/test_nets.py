"""ResNet20 and the small convnet, seeded initialisation, and FlatModel's flat parameter/gradient views."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from crpsgd_mpi.problems.nets import cnn, generator_for, init_parameters, resnet20  # noqa: E402
from crpsgd_mpi.problems.torchnet import FlatModel  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batch(n: int, seed: int, channels: int = 3, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, channels, side, side), dtype=np.float32), rng.integers(0, 10, n)


def state(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in model.state_dict().values()]


def same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x.view(-1), y.view(-1)) for x, y in zip(a, b))


# ---- networks ----------------------------------------------------------------------------------------

def test_resnet20_shape_and_parameter_count() -> None:
    model = resnet20()
    assert sum(p.numel() for p in model.parameters()) == 269_722
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 19
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in resnet20(num_classes=100, in_channels=1).parameters()) == 269_722 - 2 * 144 + 90 * 65


def test_option_a_shortcut_pads_channels_with_zeros() -> None:
    block = resnet20().blocks[3]  # first block of stage 2: 16 -> 32 channels, stride 2
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    block.eval()
    with torch.no_grad():
        for m in (block.conv1, block.conv2):
            m.weight.zero_()
        y = block(x)
    expected = F.relu(F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)) + block.bn2.bias[None, :, None, None])
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 28)])
def test_cnn_small_and_size_agnostic(channels: int, side: int) -> None:
    for batchnorm in (True, False):
        model = cnn(in_channels=channels, batchnorm=batchnorm)
        assert sum(p.numel() for p in model.parameters()) < 20_000
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batchnorm
        assert model(torch.zeros(2, channels, side, side)).shape == (2, 10)


# ---- initialisation ----------------------------------------------------------------------------------

def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    a, b, c = resnet20(seed=11), resnet20(seed=11), resnet20(seed=12)
    assert same_bits(state(a), state(b))
    assert not same_bits(state(a), state(c))
    init_parameters(c, 11)
    assert same_bits(state(a), state(c))
    init_parameters(c, generator_for(11))
    assert same_bits(state(a), state(c))
    cnn(seed=3)
    assert torch.equal(before, torch.random.get_rng_state())


def test_init_distributions() -> None:
    model = resnet20(seed=1)
    w = model.blocks[8].conv1.weight  # 64 x 64 x 3 x 3, fan_in 576
    assert abs(float(w.detach().std()) / (2 / 576) ** 0.5 - 1) < 0.02
    largest = float(model.fc.weight.detach().abs().max())
    assert 64 ** -0.5 - 0.01 < largest <= 64 ** -0.5
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
            assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1) and int(m.num_batches_tracked) == 0


def test_init_refuses_unknown_parameterised_modules() -> None:
    with pytest.raises(TypeError, match="LayerNorm"):
        init_parameters(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), 0)


# ---- FlatModel ---------------------------------------------------------------------------------------

def test_flat_views_share_memory() -> None:
    model = cnn(seed=2)
    flat = FlatModel(model)
    assert flat.dim == 14_682 and flat.params.dtype == np.float32 and flat.buffers.size == 32
    x = flat.params.copy()
    flat.params[:] = 0  # written through the numpy view: the module's weights change
    assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())
    flat.set_params(x.astype(np.float64))
    np.testing.assert_array_equal(flat.params, x)
    _, g = flat.loss_and_grad(flat.params, *batch(4, 0))
    assert g is flat.grad
    pieces = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    np.testing.assert_array_equal(pieces, g)
    assert np.array_equal(flat.buffers, np.concatenate([model.bn1.running_mean, model.bn1.running_var]))
    assert not np.array_equal(flat.buffers[:16], 0)  # the training-mode forward updated the running mean
    model.zero_grad(set_to_none=True)
    _, g2 = flat.loss_and_grad(x, *batch(4, 0))
    assert g2 is g and float(np.abs(g).sum()) > 0
    with pytest.raises(ValueError):
        flat.set_params(x[:-1])
    with pytest.raises(TypeError):
        flat.loss_and_grad(x, np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2, np.int64))


def test_gradient_is_mean_of_per_sample_gradients() -> None:
    model = cnn(batchnorm=False, seed=4)
    flat = FlatModel(model)
    images, labels = batch(6, 1)
    x = flat.params.copy()
    loss, g = flat.loss_and_grad(x, images, labels)
    g = g.copy()
    params = list(model.parameters())
    inputs, targets = torch.from_numpy(images), torch.from_numpy(labels)
    exact = torch.autograd.grad(F.cross_entropy(model(inputs), targets), params)
    np.testing.assert_array_equal(np.concatenate([t.numpy().ravel() for t in exact]), g)
    per_sample = [torch.cat([t.reshape(-1) for t in torch.autograd.grad(
        F.cross_entropy(model(inputs[i: i + 1]), targets[i: i + 1]), params)]) for i in range(6)]
    np.testing.assert_allclose(torch.stack(per_sample).mean(0).numpy(), g, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert loss == float(F.cross_entropy(model(inputs), targets))


def test_evaluate() -> None:
    model = resnet20(seed=5)
    flat = FlatModel(model)
    images, labels = batch(10, 2)
    flat.loss_and_grad(flat.params, images, labels)  # running statistics away from their initial values
    buffers, x = flat.buffers.copy(), flat.params.copy()
    loss_sum, correct = flat.evaluate(x, images, labels, batch=4)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(images))
    want = F.cross_entropy(logits, torch.from_numpy(labels), reduction="none").double().sum()
    assert loss_sum == pytest.approx(float(want), rel=1e-5)
    assert correct == int((logits.argmax(1).numpy() == labels).sum())
    assert flat.evaluate(x, images, labels, batch=10)[1] == correct
    np.testing.assert_array_equal(flat.buffers, buffers)
    np.testing.assert_array_equal(flat.params, x)
    assert model.training is False  # restored to the mode it had


def test_gradients_are_bit_reproducible() -> None:
    """Same (x, batch): same bits on repeated calls, on a second instance, and after another worker's
    batch went through the same instance (what an in-process backend relies on)."""
    a, b = FlatModel(resnet20(seed=6)), FlatModel(resnet20(seed=6))
    x = a.params.copy()
    worker_a, worker_b = batch(4, 10), batch(4, 11)
    first = a.loss_and_grad(x, *worker_b)[1].copy()
    a.loss_and_grad(x, *worker_a)
    again = a.loss_and_grad(x, *worker_b)[1].copy()
    other = b.loss_and_grad(x, *worker_b)[1].copy()
    assert np.array_equal(first, again) and np.array_equal(first, other)


_GRADIENT_IN_A_FRESH_PROCESS = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from crpsgd_mpi.problems.nets import cnn
from crpsgd_mpi.problems.torchnet import FlatModel
rng = np.random.default_rng(12)
images, labels = rng.standard_normal((8, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, 8)
flat = FlatModel(cnn(seed=7))
sys.stdout.buffer.write(flat.loss_and_grad(flat.params.copy(), images, labels)[1].tobytes())
"""


def test_gradient_bits_match_a_fresh_process() -> None:
    """One thread: another process (an MPI rank) computes the very same bits as this one."""
    flat = FlatModel(cnn(seed=7))
    flat.loss_and_grad(flat.params.copy(), *batch(8, 99))  # some other worker's batch first
    images, labels = batch(8, 12)
    here = flat.loss_and_grad(flat.params.copy(), images, labels)[1]
    out = subprocess.run([sys.executable, "-c", _GRADIENT_IN_A_FRESH_PROCESS], capture_output=True, check=True).stdout
    assert np.array_equal(np.frombuffer(out, dtype=np.float32), here)
