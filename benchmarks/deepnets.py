"""Throughput of ResNet20 / the small convnet through FlatModel vs the bare module, and gradient bit-determinism.

python benchmarks/deepnets.py [--threads 1] [--reps 5] [--json out.json]   -> prints one JSON document
Throughput: forward+backward samples/s at B = 8, 32, 128 (median of --reps, the two variants interleaved),
and FlatModel.evaluate seconds per 1000 samples. Determinism: whether the same (x, batch) gives the same
gradient bits on repeated calls, on a second instance, after another batch went through the instance,
with torch.use_deterministic_algorithms(True), in a fresh process, and with another thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from crpsgd_mpi.problems.nets import cnn, resnet20
from crpsgd_mpi.problems.torchnet import FlatModel

MODELS: dict[str, Callable[..., torch.nn.Module]] = {"resnet20": resnet20, "cnn": cnn}


def batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, n)


def bare_step(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> None:
    model.train()
    model.zero_grad(set_to_none=False)
    F.cross_entropy(model(torch.from_numpy(images)), torch.from_numpy(labels)).backward()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput(name: str, reps: int) -> dict[str, object]:
    bare, flat = MODELS[name](seed=1), FlatModel(MODELS[name](seed=1))
    x = flat.params.copy()
    rows: dict[str, object] = {}
    for B in (8, 32, 128):
        images, labels = batch(B, B)
        bare_step(bare, images, labels)  # warm-up (oneDNN primitive creation)
        flat.loss_and_grad(x, images, labels)
        t_bare, t_flat = [], []
        for _ in range(reps):
            t_bare.append(timed(lambda: bare_step(bare, images, labels)))  # noqa: B023
            t_flat.append(timed(lambda: flat.loss_and_grad(x, images, labels)))  # noqa: B023
        mb, mf = statistics.median(t_bare), statistics.median(t_flat)
        rows[f"B={B}"] = {"bare_samples_per_s": round(B / mb, 1), "flat_samples_per_s": round(B / mf, 1),
                          "flat_overhead_percent": round(100 * (mf / mb - 1), 1)}
    def fixed_cost() -> None:  # what loss_and_grad adds to a bare step: copy x in, zero the flat grad, bind views
        flat.set_params(x)
        flat._g.zero_()
        flat._bind_grads()

    rows["flat_fixed_cost_ms"] = round(1e3 * statistics.median(timed(fixed_cost) for _ in range(50)), 3)
    images, labels = batch(1000, 7)
    flat.evaluate(x, images[:100], labels[:100])
    rows["evaluate_s_per_1000"] = round(statistics.median(
        timed(lambda: flat.evaluate(x, images, labels, batch=500)) for _ in range(max(1, reps // 2))), 3)
    return rows


def gradient(seed_batch: int, B: int = 16, instance_seed: int = 3) -> np.ndarray:
    flat = FlatModel(resnet20(seed=instance_seed))
    return flat.loss_and_grad(flat.params.copy(), *batch(B, seed_batch))[1].copy()


def determinism(threads: int) -> dict[str, object]:
    reference = gradient(1)
    found: dict[str, object] = {}
    flat = FlatModel(resnet20(seed=3))
    x = flat.params.copy()
    found["repeated_calls"] = all(np.array_equal(reference, flat.loss_and_grad(x, *batch(16, 1))[1]) for _ in range(3))
    found["second_instance"] = np.array_equal(reference, gradient(1))
    flat.loss_and_grad(x, *batch(16, 2))  # worker A's batch, then worker B's
    found["after_other_batch"] = np.array_equal(reference, flat.loss_and_grad(x, *batch(16, 1))[1])
    flat.loss_and_grad(x, *batch(40, 2))  # a different batch size in between
    found["after_other_batch_size"] = np.array_equal(reference, flat.loss_and_grad(x, *batch(16, 1))[1])
    torch.use_deterministic_algorithms(True)
    found["deterministic_algorithms_flag"] = np.array_equal(reference, gradient(1))
    torch.use_deterministic_algorithms(False)
    code = ("import sys, torch; torch.set_num_threads(int(sys.argv[1])); sys.path.insert(0, 'benchmarks');"
            "import deepnets; sys.stdout.buffer.write(deepnets.gradient(1).tobytes())")
    for n in sorted({threads, 1, 2}):
        out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, check=True).stdout
        other = np.frombuffer(out, dtype=np.float32)
        found[f"fresh_process_{n}_threads"] = np.array_equal(reference, other)
        if not found[f"fresh_process_{n}_threads"]:
            found[f"fresh_process_{n}_threads_max_rel_diff"] = float(
                np.abs(other - reference).max() / np.abs(reference).max())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-throughput", action="store_true", help="only the determinism checks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"torch": torch.__version__, "threads": args.threads, "reps": args.reps,
              "determinism": determinism(args.threads)}
    if not args.no_throughput:
        report.update({name: throughput(name, args.reps) for name in MODELS})
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
