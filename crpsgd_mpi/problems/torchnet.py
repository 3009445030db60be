"""Any torch nn.Module seen as one flat float32 vector of parameters, with one flat gradient buffer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _pack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One new contiguous float32 tensor holding `tensors` in order; each tensor's storage is rebound to
    its slice (tensor.data = view), so the module keeps working on the flat storage."""
    flat = torch.empty(sum(t.numel() for t in tensors), dtype=torch.float32)
    offset = 0
    for t in tensors:
        part = flat[offset: offset + t.numel()].view_as(t)
        part.copy_(t.detach())
        t.data = part
        offset += t.numel()
    return flat


def _as_inputs(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 images and int64 labels as CPU tensors, sharing memory with the arrays where they already fit."""
    if not isinstance(images, torch.Tensor):
        if not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"images must be floating point (normalised), not {images.dtype}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        images = torch.from_numpy(images if images.flags.writeable else images.copy())
    if not isinstance(labels, torch.Tensor):
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        labels = torch.from_numpy(labels if labels.flags.writeable else labels.copy())
    if images.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise ValueError(f"{images.shape[0]} images for labels of shape {tuple(labels.shape)}")
    return images.float(), labels.long()


class FlatModel:
    """A classifier `module` (logits out) trained with the cross-entropy loss, seen through flat vectors.

    All parameters live as views into one contiguous float32 tensor, exposed without copy as the numpy
    vector `params` (dimension `dim`); their `.grad` are views into one flat buffer, exposed as `grad`.
    The floating-point buffers (BatchNorm running_mean / running_var; not num_batches_tracked) likewise
    live in the flat vector `buffers`: they are model state outside x, updated by every training-mode
    forward pass exactly as torch updates them.

    `loss_and_grad(x, images, labels)` returns the mean cross-entropy over the B samples and its gradient,
    which is the mean of the B per-sample gradients for networks without BatchNorm. With BatchNorm in
    training mode the samples are coupled (each is normalised with the batch's mean and variance), so the
    gradient is that of the batch as a whole and depends on how samples are grouped into batches.

    Do not move, cast or `zero_grad(set_to_none=True)` the module after wrapping it: that would detach it
    from the flat storage (the gradient views are re-attached at every call, the parameters are not).

    `device="cuda"` moves the module to the GPU first: the flat storage then lives there, and `params`, `grad`
    and `get_buffers()` are host copies made at each call (`set_params`/`set_buffers` copy host -> device).
    """

    dtype = np.float32

    def __init__(self, module: nn.Module, device: str = "cpu") -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        module.to(self.device)
        params = list(module.parameters())
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        for t in (*params, *buffers):
            if t.dtype != torch.float32 or t.device.type != self.device.type:
                raise TypeError(f"FlatModel needs float32 tensors on {self.device}; found {t.dtype} on {t.device}")
        self.module = module
        self._params = params
        self._x = _pack(params)
        self._g = torch.zeros_like(self._x)
        self._grad_views = [self._g[s:e].view_as(p) for p, s, e in self._slices(params)]
        self._b = _pack(buffers)
        on_cpu = self.device.type == "cpu"
        self.params: np.ndarray = self._x.numpy() if on_cpu else self._x.cpu().numpy()
        self.grad: np.ndarray = self._g.numpy() if on_cpu else np.zeros(self.dim, dtype=np.float32)
        self.buffers: np.ndarray = self._b.numpy() if on_cpu else self._b.cpu().numpy()
        self._bind_grads()

    def get_buffers(self) -> np.ndarray:
        """The floating-point buffers now (a view on the CPU, a copy from the GPU)."""
        if self.device.type != "cpu":
            np.copyto(self.buffers, self._b.cpu().numpy())
        return self.buffers

    @staticmethod
    def _slices(tensors: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, int, int]]:
        out, offset = [], 0
        for t in tensors:
            out.append((t, offset, offset + t.numel()))
            offset += t.numel()
        return out

    def _bind_grads(self) -> None:
        for p, view in zip(self._params, self._grad_views, strict=True):
            if p.grad is not view:
                p.grad = view

    @property
    def dim(self) -> int:
        """Number of parameters (length of x)."""
        return int(self._x.numel())

    def set_params(self, x: np.ndarray) -> None:
        """Copy x (any float array of length dim, cast to float32) into the parameters; nothing is copied
        when x is `params` itself."""
        if x.shape != (self.dim,):
            raise ValueError(f"x has shape {x.shape}, expected ({self.dim},)")
        if x.ctypes.data != self.params.ctypes.data or x.strides != self.params.strides or x.dtype != self.dtype:
            np.copyto(self.params, x, casting="same_kind")
        if self.device.type != "cpu":
            self._x.copy_(torch.from_numpy(self.params))

    def set_buffers(self, b: np.ndarray) -> None:
        """Copy b into the floating-point buffers (e.g. to switch between workers' BatchNorm statistics)."""
        if b.shape != self.buffers.shape:
            raise ValueError(f"buffers have shape {b.shape}, expected {self.buffers.shape}")
        np.copyto(self.buffers, b, casting="same_kind")
        if self.device.type != "cpu":
            self._b.copy_(torch.from_numpy(self.buffers))

    def loss_and_grad(self, x: np.ndarray, images: np.ndarray | torch.Tensor,
                      labels: np.ndarray | torch.Tensor) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of the batch at x in training mode, and its gradient: the array `grad`
        itself (no copy; overwritten by the next call)."""
        inputs, targets = _as_inputs(images, labels)
        if targets.numel() == 0:
            raise ValueError("empty batch")
        self.set_params(x)
        self.module.train()
        self._bind_grads()
        self._g.zero_()
        loss = F.cross_entropy(self.module(inputs.to(self.device)), targets.to(self.device))
        loss.backward()
        if self.device.type != "cpu":
            np.copyto(self.grad, self._g.cpu().numpy())
        return float(loss.detach()), self.grad

    def evaluate(self, x: np.ndarray, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                 batch: int = 500) -> tuple[float, int]:
        """(sum of the cross-entropy losses, number of correct predictions) at x in eval mode (running
        BatchNorm statistics), `batch` samples at a time, without autograd."""
        inputs, targets = _as_inputs(images, labels)
        self.set_params(x)
        was_training = self.module.training
        self.module.eval()
        loss_sum, correct = 0.0, 0
        try:
            with torch.no_grad():
                for start in range(0, targets.numel(), batch):
                    logits = self.module(inputs[start: start + batch].to(self.device))
                    y = targets[start: start + batch].to(self.device)
                    loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                    correct += int((logits.argmax(dim=1) == y).sum())
        finally:
            self.module.train(was_training)
        return loss_sum, correct
