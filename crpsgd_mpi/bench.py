"""`make bench`: performance as ratios measured in one run (kernel vs memory bandwidth, simulator vs a raw
mpi4py loop, in-process vs mpiexec, cost growth in T); prints a table and writes JSON."""

from __future__ import annotations

from . import threads  # noqa: F401, I001  (must precede numpy)

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .launch import run_job
from .problem import dense_minibatch_grads, sparse_minibatch_grad
from .trace import read_trace

REPO = Path(__file__).resolve().parents[1]


def _median_time(fn, repeats: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(min(ts)), float(max(ts))


def stream_read_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of a STREAM-like read (sum of a large array)."""
    a = np.ones(nbytes // 8)
    med, _, _ = _median_time(lambda: a.sum(), repeats)
    return nbytes / med


def kernel_rates(rows: int, d: int, repeats: int) -> dict[str, float]:
    """Dense and sparse minibatch gradient throughput for a batch of `rows` samples."""
    rng = np.random.default_rng(0)
    Xb = rng.standard_normal((1, rows, d))
    yb = rng.choice([-1.0, 1.0], (1, rows))
    x, out = rng.standard_normal((1, d)), np.empty((1, d))
    med, lo, hi = _median_time(lambda: dense_minibatch_grads(Xb, yb, x, out), repeats)
    S = sp.random(rows, 47236, density=47 / 47236, format="csr", random_state=0)
    xs, outs = rng.standard_normal(47236), np.empty(47236)
    smed, _, _ = _median_time(lambda: sparse_minibatch_grad(S, yb[0], xs, outs), repeats)
    return {"dense_s": med, "dense_min": lo, "dense_max": hi, "dense_bytes_per_s": Xb.nbytes / med,
            "dense_samples_per_s": rows / med, "sparse_samples_per_s": rows / smed}


def sim_vs_raw(n: int, algo: str, T: int, param: str, tmp: Path) -> dict[str, float]:
    """Wall time of the simulator's round loop vs the raw loop, same rounds, same batches."""
    out = tmp / f"sim-{n}-{algo}.h5"
    extra = ["--batch-size", param] if algo == "psgd" else ["--rho", param]
    res = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", "--algorithm", algo, "--T", str(T), *extra,
                      "--eval-points", "2", "--out", str(out), "--overwrite", "--quiet"], timeout=600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    tr = read_trace(out)
    sim = float(tr.rounds["wall_time"][-1])  # evaluations are off the clock
    raw = run_job(n, [sys.executable, str(REPO / "benchmarks" / "raw_loop.py"), algo, str(T), param], timeout=600)
    if raw.returncode != 0:
        raise RuntimeError(raw.stderr)
    raw_s, raw_rounds = raw.stdout.split()
    assert int(raw_rounds) == len(tr.rounds["round"])
    return {"sim_s": sim, "raw_s": float(raw_s), "ratio": sim / float(raw_s), "rounds": int(raw_rounds)}


def local_vs_mpi(n: int, T: int, tmp: Path, algorithm: str = "psgd") -> dict[str, float]:
    """Whole-run wall time in process vs under mpiexec, and whether the traces are identical."""
    from .run import main

    lo = tmp / "local.h5"
    args = ["--algorithm", algorithm, "--T", str(T), "--eval-points", "2", "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    main(["--backend", "local", "--workers", str(n), *args, "--out", str(lo)])
    t_local = time.perf_counter() - t0
    mp = tmp / "mpi.h5"
    t0 = time.perf_counter()
    run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", *args, "--out", str(mp)], timeout=600)
    t_mpi = time.perf_counter() - t0
    a, b = read_trace(lo), read_trace(mp)
    same = bool(np.array_equal(a.x, b.x) and np.array_equal(a.evals["loss"], b.evals["loss"]))
    return {"local_s": t_local, "mpi_s": t_mpi, "speedup": t_mpi / t_local, "identical": same,
            "local_loop_s": float(a.rounds["wall_time"][-1]), "mpi_loop_s": float(b.rounds["wall_time"][-1])}


ALGORITHMS = ("cr-psgd", "psgd", "local-sgd", "catalyst")


def growth(values: list[int], vary: str, fixed: dict[str, int], tmp: Path) -> dict[str, object]:
    """In-process run-loop time (evaluations excluded) vs T or N for each algorithm, with the fitted
    log-log exponent."""
    from .run import main

    out: dict[str, object] = {}
    for algo in ALGORITHMS:
        times = []
        for v in values:
            p = tmp / f"g-{algo}-{vary}{v}.h5"
            params = {**fixed, vary: v}
            main(["--backend", "local", "--workers", str(params["workers"]), "--algorithm", algo,
                  "--T", str(params["T"]), "--eval-points", "2", "--out", str(p), "--overwrite", "--quiet"])
            tr = read_trace(p)
            times.append(max(float(tr.rounds["wall_time"][-1]), 1e-6))
        out[algo] = {vary: values, "s": times, "exponent": float(np.polyfit(np.log(values), np.log(times), 1)[0])}
    return out


def reduction_cost(n: int, T: int, data: list[str], tmp: Path) -> dict[str, float]:
    """Run-loop time with the ordered (Allgather) reduction vs the in-place Allreduce, PSGD B=1."""
    out: dict[str, float] = {}
    for mode in ("ordered", "allreduce"):
        p = tmp / f"red-{mode}.h5"
        res = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", "--algorithm", "psgd", "--T", str(T), *data,
                          "--reduction", mode, "--eval-points", "2", "--out", str(p), "--overwrite", "--quiet"],
                      timeout=600)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        tr = read_trace(p)
        out[mode] = float(tr.rounds["wall_time"][-1])
    out["ordered_over_allreduce"] = out["ordered"] / out["allreduce"]
    return out


def peak_memory(n: int, dataset: list[str], tmp: Path) -> dict[str, float]:
    """Peak resident memory per rank against the rank's shard size."""
    out = tmp / "mem.h5"
    res = run_job(n, [sys.executable, str(REPO / "benchmarks" / "memory_probe.py"), *dataset, "--T", "200",
                      "--out", str(out), "--overwrite", "--quiet"], timeout=600)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    peaks = [int(line.split()[1]) for line in res.stdout.splitlines() if line.strip()]
    cfg = read_trace(out).config
    shard = math.ceil(cfg["n_samples"] / n) * cfg["n_features"] * 8
    return {"ranks": len(peaks), "peak_max_MB": max(peaks) / 1e6, "shard_MB": shard / 1e6,
            "excess_MB": (max(peaks) - shard) / 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark code runs")
    p.add_argument("--json", type=Path, default=Path("bench.json"))
    ns = p.parse_args(argv)
    q = ns.quick
    reps = 3 if q else 9
    results: dict[str, object] = {}
    big = 1 << (22 if q else 28)  # 256 MiB read: well beyond the L3 cache
    results["stream_read_GBps"] = stream_read_bandwidth(big, reps) / 1e9
    results["kernel_large"] = kernel_rates(1024 if q else 32768, 785, reps)
    results["kernel_small"] = kernel_rates(64, 785, reps * 20)
    results["kernel_large_vs_stream"] = results["kernel_large"]["dense_bytes_per_s"] / 1e9 / results["stream_read_GBps"]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        T = 300 if q else 10_000
        results["sim_vs_raw"] = {f"N{n}-{a}": sim_vs_raw(n, a, T, prm, tmp)
                                 for n in ((2,) if q else (2, 10)) for a, prm in (("psgd", "1"), ("cr-psgd", "1.1"))}
        results["local_vs_mpi10"] = {a: local_vs_mpi(2 if q else 10, T, tmp, a) for a in ALGORITHMS}
        results["growth_T"] = growth([100, 300] if q else [1000, 10_000, 100_000], "T", {"workers": 10}, tmp)
        results["growth_N"] = growth([1, 2] if q else [1, 2, 4, 8, 16], "workers", {"T": T}, tmp)
        fmnist = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
        data = ["--dataset", "fashion-mnist"] if fmnist.exists() and not q else ["--samples", "2000"]
        results["memory"] = peak_memory(2 if q else 10, data, tmp)
        results["reduction_cost"] = reduction_cost(2 if q else 10, 100 if q else 3000, data, tmp)
    ns.json.write_text(json.dumps(results, indent=1))
    print(f"STREAM-like read: {results['stream_read_GBps']:.1f} GB/s")
    kl = results["kernel_large"]
    print(f"dense kernel, large batch: {kl['dense_bytes_per_s'] / 1e9:.1f} GB/s = "
          f"{results['kernel_large_vs_stream']:.0%} of read bandwidth "
          f"(median {kl['dense_s'] * 1e3:.2f} ms, min {kl['dense_min'] * 1e3:.2f}, max {kl['dense_max'] * 1e3:.2f})")
    print(f"dense kernel, B=64: {results['kernel_small']['dense_samples_per_s']:.3g} samples/s; "
          f"sparse (d=47236, 47 nnz/row): {kl['sparse_samples_per_s']:.3g} samples/s")
    for k, v in results["sim_vs_raw"].items():  # type: ignore[union-attr]
        print(f"simulator vs raw mpi4py loop {k}: {v['sim_s']:.3f} s vs {v['raw_s']:.3f} s = {v['ratio']:.2f}x "
              f"({v['rounds']} rounds)")
    for algo, lv in results["local_vs_mpi10"].items():  # type: ignore[union-attr]
        print(f"in-process vs mpiexec, {algo}: {lv['local_s']:.2f} s vs {lv['mpi_s']:.2f} s = {lv['speedup']:.1f}x "
              f"faster; traces identical: {lv['identical']}")
    for key, name in (("growth_T", "T"), ("growth_N", "N")):
        for algo, g in results[key].items():  # type: ignore[union-attr]
            print(f"cost growth in {name}, {algo}: exponent {g['exponent']:.2f}  "
                  f"({', '.join(f'{s:.3f}' for s in g['s'])} s)")
    m = results["memory"]
    print(f"peak memory per rank ({m['ranks']} ranks): {m['peak_max_MB']:.0f} MB vs shard {m['shard_MB']:.0f} MB: "
          f"shard + {m['excess_MB']:.0f} MB")
    r = results["reduction_cost"]
    print(f"ordered (Allgather + fixed-order sum) vs Allreduce, PSGD B=1 on {' '.join(data)}: "
          f"{r['ordered']:.3f} s vs {r['allreduce']:.3f} s = {r['ordered_over_allreduce']:.2f}x")
    print(f"results in {ns.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
