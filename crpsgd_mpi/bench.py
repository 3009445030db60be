"""`make bench`: performance as ratios measured in one run (kernel vs memory bandwidth, simulator vs a raw
mpi4py loop, in-process vs mpiexec, growth in T and N, memory, reduction cost, cost of CR-PSGD's batch schedule
across rho, the three reductions per round, virtual workers on few ranks, rounds/s against raw mpi4py and numpy
loops); prints a table, writes JSON."""

from __future__ import annotations

from . import threads  # noqa: F401, I001  (must precede numpy)

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .launch import run_job
from .problems import dense_minibatch_grads, sparse_minibatch_grad
from .schedules import BatchSchedule, Geometric
from .trace import equal_iterates, read_trace

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = ("cr-psgd", "psgd", "local-sgd", "catalyst")
FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SCHEDULE_RHOS = (1.0001, 1.01, 1.5)
#: Whole runs with many virtual workers (issue 10): CR-PSGD, T = 10^4, N = 1024; N = 10^4 on 10^6 samples.
SCALE = {"N1024": ["--backend", "local", "--workers", "1024"],
         "N10000": ["--backend", "local", "--workers", "10000", "--samples", "1000000"]}
SCALE_QUICK = {"N64": ["--backend", "local", "--workers", "64", "--samples", "2000", "--T", "300"]}
#: The results as the report reads them back (bench.json's object): nested records of varying shape, read by key.
Record = Mapping[str, Any]


def stats(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def timed(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Wall time of fn, repeated (after one warm-up call)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return stats(ts)


def stream_read_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes/s of a STREAM-like read (sum of a large array)."""
    a = np.ones(nbytes // 8)
    return nbytes / timed(lambda: a.sum(), repeats)["median"]


def kernel_rates(rows: int, repeats: int, d: int = 785, d_sparse: int = 47236) -> dict[str, object]:
    """Minibatch-gradient throughput for `rows` samples: dense (d features) and sparse CSR
    (d_sparse features, 47 non-zeros per row, like rcv1); bytes are those of the batch's X."""
    rng = np.random.default_rng(0)
    Xb = rng.standard_normal((1, rows, d))
    yb = rng.choice([-1.0, 1.0], (1, rows))
    x, out = rng.standard_normal((1, d)), np.empty((1, d))
    dense = timed(lambda: dense_minibatch_grads(Xb, yb, x, out), repeats)
    S = sp.random(rows, d_sparse, density=47 / d_sparse, format="csr", random_state=0)
    assert isinstance(S, sp.csr_matrix)  # format="csr"
    xs, outs = rng.standard_normal(d_sparse), np.empty(d_sparse)
    sparse = timed(lambda: sparse_minibatch_grad(S, yb[0], xs, outs), repeats)
    s_bytes = S.data.nbytes + S.indices.nbytes + S.indptr.nbytes
    return {"rows": rows,
            "dense": {**dense, "GBps": Xb.nbytes / dense["median"] / 1e9, "samples_per_s": rows / dense["median"]},
            "sparse": {**sparse, "GBps": s_bytes / sparse["median"] / 1e9, "samples_per_s": rows / sparse["median"]}}


def llc_bytes() -> int:
    """Size of the last-level cache (sysfs; 32 MiB when unknown)."""
    text = ""
    for level in (3, 2):
        try:
            text = Path(f"/sys/devices/system/cpu/cpu0/cache/index{level}/size").read_text().strip()
            break
        except OSError:
            continue
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    return 32 << 20


def _blas_grads(Xb: np.ndarray, yb: np.ndarray, models: np.ndarray, out: np.ndarray) -> None:
    """The dense kernel before fixed-order arithmetic (blocked one-threaded BLAS, both products per block while it is
    in cache), kept as the speed reference: its bits depend on the BLAS build, the CPU and the alignment."""
    from scipy.special import expit
    from threadpoolctl import threadpool_limits

    B, d = Xb.shape[1], Xb.shape[2]
    R = max(8, (1 << 19) // (8 * d) // 8 * 8)
    with threadpool_limits(1, user_api="blas"):
        for lo in range(0, B, R):
            blk, yblk = Xb[0, lo:lo + R], yb[0, lo:lo + R]
            z = blk @ models[0]
            z *= yblk
            part = (-yblk * expit(-z) / B) @ blk
            if lo:
                out[0] += part
            else:
                out[0] = part


def dense_sweep(batches: list[int], repeats: int, read_GBps: float, d: int = 785) -> list[dict[str, object]]:
    """The dense minibatch kernel for batch sizes B from 1 to beyond the LLC, median GB/s of the batch's X and its
    share of the read rate: on an aligned batch, on a misaligned one (the same bits), gathered from a 16384-row shard
    (the simulator's own path), and the blocked BLAS kernel it replaced (machine-dependent bits) for reference."""
    from .memory import aligned_empty

    rng = np.random.default_rng(0)
    buf = aligned_empty(max(batches) * d + 8)
    buf[:] = rng.standard_normal(buf.size)
    shard = aligned_empty((16384, d))
    shard[:] = rng.standard_normal(shard.shape)
    y_shard = rng.choice([-1.0, 1.0], 16384)
    return [_sweep_row(B, d, buf, shard, y_shard, rng, repeats, read_GBps) for B in batches]


def _sweep_row(B: int, d: int, buf: np.ndarray, shard: np.ndarray, y_shard: np.ndarray, rng: np.random.Generator,
               repeats: int, read_GBps: float) -> dict[str, object]:
    from .problems import gathered_minibatch_grad, uses_compiled

    Xa = buf[:B * d].reshape(1, B, d)
    Xm = buf[1:B * d + 1].reshape(1, B, d)  # 8 bytes off a 64-byte boundary
    yb, x = rng.choice([-1.0, 1.0], (1, B)), rng.standard_normal((1, d)) * 0.01
    g, idx = np.empty((1, d)), rng.integers(0, shard.shape[0], B)
    work = np.empty((1, B, d)) if not uses_compiled(B, d) else None
    Xg, yg = np.empty((1, B, d)), np.empty((1, B))

    def gathered() -> None:
        if uses_compiled(B, d):
            gathered_minibatch_grad(shard, y_shard, idx, x[0], g[0])
            return
        shard.take(idx, axis=0, out=Xg[0], mode="clip")
        y_shard.take(idx, out=yg[0], mode="clip")
        dense_minibatch_grads(Xg, yg, x, g, work)

    reps = repeats if Xa.nbytes > 1 << 24 else repeats * max(1, min(200, (1 << 27) // Xa.nbytes))
    t = {"aligned": timed(lambda: dense_minibatch_grads(Xa, yb, x, g, work), reps),
         "misaligned": timed(lambda: dense_minibatch_grads(Xm, yb, x, g, work), reps),
         "gathered": timed(gathered, reps),
         "blas": timed(lambda: _blas_grads(Xa, yb, x, g), reps)}
    row: dict[str, object] = {"B": B, "MB": Xa.nbytes / 1e6, "kernel": "compiled" if uses_compiled(B, d) else "numpy"}
    for name, v in t.items():
        gbps = Xa.nbytes / v["median"] / 1e9
        row[name] = {**v, "GBps": gbps, "of_read": gbps / read_GBps}
    return row


#: Runs the simulator, then prints the process's peak resident set (VmHWM, KiB; 0 where /proc is missing). Its own
#: high-water mark: getrusage's ru_maxrss of a child counts the parent's pages at the fork.
_PROBE = ("import sys\nfrom crpsgd_mpi.run import main\ncode = main(sys.argv[1:])\ntry:\n"
          "    hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
          "except (OSError, IndexError):\n    hwm = '0'\nprint(hwm, flush=True)\nsys.exit(code)")


def _peak_run(args: list[str], cache: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one in-process run in a fresh process, with f* cached under `cache`."""
    import os
    import subprocess

    env = {**os.environ, "CRPSGD_CACHE": str(cache)}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _PROBE, *args, "--quiet"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"run failed ({res.returncode}): {args}\n{res.stderr}")
    return seconds, int(res.stdout.split()[-1]) * 1024 / 1e6


def scale_runs(cases: dict[str, list[str]], runs: int, tmp: Path) -> dict[str, object]:
    """Whole in-process runs with many virtual workers: wall time (start-up, data, L, f*, rounds, evaluations) and
    peak RSS; the first run with an empty f* cache (computes f*), the others with it cached."""
    out: dict[str, object] = {}
    for name, args in cases.items():
        cache = tmp / f"cache-{name}"
        cache.mkdir()
        trace = ["--out", str(tmp / "scale.h5"), "--overwrite"]
        cold = _peak_run([*args, *trace], cache)
        warm = [_peak_run([*args, *trace], cache) for _ in range(max(1, runs - 1))]
        out[name] = {"args": args, "cold_s": cold[0], "cold_MB": cold[1], "warm": stats([w[0] for w in warm]),
                     "warm_MB": max(w[1] for w in warm)}
    return out


def _sim(n: int, args: list[str], out: Path) -> float:
    res = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", *args, "--eval-points", "2", "--out", str(out),
                      "--overwrite", "--quiet"], timeout=900)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return float(read_trace(out).rounds["wall_time"].iloc[-1])  # evaluations and trace writes are off the clock


def sim_vs_raw(n: int, algo: str, T: int, param: str, repeats: int, tmp: Path) -> dict[str, object]:
    """Round-loop time of the simulator vs the raw loop (same rounds, batches, draws, kernel), alternated."""
    extra = ["--batch-size", param] if algo == "psgd" else ["--rho", param]
    sims, raws = [], []
    for _ in range(repeats):
        sims.append(_sim(n, ["--algorithm", algo, "--T", str(T), *extra], tmp / "sim.h5"))
        raw = run_job(n, [sys.executable, str(REPO / "benchmarks" / "raw_loop.py"), algo, str(T), param], timeout=900)
        if raw.returncode != 0:
            raise RuntimeError(raw.stderr)
        seconds, rounds = raw.stdout.split()
        if int(rounds) != len(read_trace(tmp / "sim.h5").rounds["round"]):
            raise RuntimeError("raw loop and simulator ran different rounds")
        raws.append(float(seconds))
    return {"sim": stats(sims), "raw": stats(raws), "ratio": float(np.median(sims) / np.median(raws)),
            "rounds": int(rounds)}


def local_vs_mpi(n: int, T: int, algorithm: str, repeats: int, tmp: Path) -> dict[str, object]:
    """Whole-run wall time (start-up included) in process vs under mpiexec; traces compared bit for bit."""
    from .run import main

    args = ["--algorithm", algorithm, "--T", str(T), "--eval-points", "2", "--overwrite", "--quiet"]
    loc, mpi = tmp / "local.h5", tmp / "mpi.h5"
    t_local, t_mpi = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        main(["--backend", "local", "--workers", str(n), *args, "--out", str(loc)])
        t_local.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", *args, "--out", str(mpi)], timeout=900)
        t_mpi.append(time.perf_counter() - t0)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
    a, b = read_trace(loc), read_trace(mpi)
    same = all(np.array_equal(a.rounds[c], b.rounds[c]) for c in ("round", "sfo", "batch_size", "stage", "bytes"))
    same = same and np.array_equal(a.evals["loss"], b.evals["loss"]) and equal_iterates(a.x, b.x)
    return {"local": stats(t_local), "mpi": stats(t_mpi), "speedup": float(np.median(t_mpi) / np.median(t_local)),
            "identical": bool(same)}


def growth(values: list[int], vary: str, fixed: dict[str, int], tmp: Path) -> dict[str, object]:
    """In-process round-loop time vs T or N for each algorithm, with the fitted log-log exponent."""
    from .run import main

    out: dict[str, object] = {}
    for algo in ALGORITHMS:
        times = []
        for v in values:
            params = {**fixed, vary: v}
            p = tmp / "growth.h5"
            main(["--backend", "local", "--workers", str(params["workers"]), "--algorithm", algo,
                  "--T", str(params["T"]), "--eval-points", "2", "--out", str(p), "--overwrite", "--quiet"])
            times.append(max(float(read_trace(p).rounds["wall_time"].iloc[-1]), 1e-6))
        out[algo] = {vary: values, "s": times, "exponent": float(np.polyfit(np.log(values), np.log(times), 1)[0])}
    return out


def peak_memory(n: int, dataset: list[str], repeats: int, tmp: Path) -> dict[str, float]:
    """Peak resident memory of the largest rank against the rank's shard size (median of runs)."""
    out = tmp / "mem.h5"
    peaks = []
    for _ in range(repeats):
        res = run_job(n, [sys.executable, str(REPO / "benchmarks" / "memory_probe.py"), *dataset, "--T", "200",
                          "--out", str(out), "--overwrite", "--quiet"], timeout=900)
        if res.returncode != 0:
            raise RuntimeError(res.stderr)
        ranks = [int(line.split()[1]) for line in res.stdout.splitlines() if line.strip()]
        peaks.append(max(ranks))
    cfg = read_trace(out).config
    shard = math.ceil(cfg["n_samples"] / n) * cfg["n_features"] * 8
    return {"ranks": len(ranks), "peak_max_MB": float(np.median(peaks)) / 1e6, "peak_worst_MB": max(peaks) / 1e6,
            "shard_MB": shard / 1e6, "excess_MB": (float(np.median(peaks)) - shard) / 1e6}


def reduction_cost(n: int, T: int, data: list[str], repeats: int, tmp: Path) -> dict[str, object]:
    """Round-loop time with the ordered reduction (Iallgather + fixed-order sum) vs in-place Iallreduce."""
    out = {mode: stats([_sim(n, ["--algorithm", "psgd", "--T", str(T), *data, "--reduction", mode],
                             tmp / f"red-{mode}.h5") for _ in range(repeats)]) for mode in ("ordered", "allreduce")}
    return {**out, "ordered_over_allreduce": out["ordered"]["median"] / out["allreduce"]["median"]}


#: The reduction benchmark's sizes: (elements m, dtype): the default run's 51, 10^4 and 10^5 doubles, and a
#: ResNet20-sized float32 gradient.
REDUCTION_SIZES = ((51, "f8"), (10_000, "f8"), (100_000, "f8"), (270_000, "f4"))
REDUCTION_QUICK = ((51, "f8"), (1000, "f8"))
_DTYPES = {"f8": np.float64, "f4": np.float32}


def _size_arg(sizes: Sequence[tuple[int, str]]) -> str:
    return ",".join(f"{m}:{dt}" for m, dt in sizes)


def mpi_reductions(n: int, sizes: Sequence[tuple[int, str]], repeats: int, target: float,
                   split: Sequence[tuple[int, str]] = (), sweep: Sequence[int] = ()) -> dict[str, object]:
    """One job of n ranks (benchmarks/reduction.py): seconds per round of MPIBackend.mean with each reduction, one
    row (1, m) a rank; with `split`, the exact reduction's steps timed one by one; with `sweep`, its gathered path
    against its two collectives at these m (float64)."""
    cmd = [sys.executable, str(REPO / "benchmarks" / "reduction.py"), "--sizes", _size_arg(sizes),
           "--repeats", str(repeats), "--target", str(target)]
    if split:
        cmd += ["--split", _size_arg(split)]
    if sweep:
        cmd += ["--sweep", ",".join(map(str, sweep))]
    res = run_job(n, cmd, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def local_reductions(n: int, sizes: Sequence[tuple[int, str]], repeats: int) -> dict[str, object]:
    """Seconds of LocalBackend.mean on (n, m) rows in process, exact and ordered (in process the `allreduce`
    reduction is the ordered sum)."""
    from .comm import LocalBackend

    out: dict[str, object] = {}
    for m, dt in sizes:
        rows = np.random.default_rng(0).standard_normal((n, m)).astype(_DTYPES[dt])
        loops = max(1, min(2000, (1 << 24) // rows.nbytes))
        row: dict[str, object] = {}
        for mode in ("exact", "ordered"):
            be = LocalBackend(n, mode)

            def call(be: LocalBackend = be, rows: np.ndarray = rows, loops: int = loops) -> None:
                for _ in range(loops):
                    be.mean(rows)

            row[mode] = {k: v / loops for k, v in timed(call, repeats).items()}
        out[f"{m}:{dt}"] = row
    return out


def reductions(ranks: Sequence[int], sizes: Sequence[tuple[int, str]], repeats: int, target: float,
               split: tuple[int, tuple[int, str]] | None, sweep: Sequence[int]) -> dict[str, object]:
    """The reduction table (MPI and in process, for every N), the split of the exact reduction (at split[0] ranks,
    size split[1]), and the GATHER_ELEMENTS sweep at every N."""
    mpi: dict[str, object] = {}
    local: dict[str, object] = {}
    out: dict[str, object] = {"mpi": mpi, "local": local}
    for n in ranks:
        job = mpi_reductions(n, sizes, repeats, target, [split[1]] if split and split[0] == n else (), sweep)
        mpi[f"N{n}"] = job
        local[f"N{n}"] = local_reductions(n, sizes, repeats)
        out["gather_elements"] = job["gather_elements"]
    return out


def _whole_run(n: int, args: list[str], out: Path) -> float:
    t0 = time.perf_counter()
    res = run_job(n, [sys.executable, "-m", "crpsgd_mpi.run", *args, "--out", str(out), "--overwrite", "--quiet"],
                  timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    return time.perf_counter() - t0


def placement(workers: int, few: int, args: list[str], runs: int, tmp: Path) -> dict[str, object]:
    """Whole-job wall time (start-up included) of N virtual workers on `few` ranks against one rank a worker,
    alternated; the traces compared bit for bit (the exact reduction gives the same bits on any placement)."""
    packed, spread = [], []
    for _ in range(runs):
        packed.append(_whole_run(few, [*args, "--workers", str(workers)], tmp / "packed.h5"))
        spread.append(_whole_run(workers, args, tmp / "spread.h5"))
    a, b = read_trace(tmp / "packed.h5"), read_trace(tmp / "spread.h5")
    same = equal_iterates(a.x, b.x) and np.array_equal(a.evals["loss"], b.evals["loss"])
    return {"workers": workers, "ranks": few, "args": args, "packed": stats(packed), "spread": stats(spread),
            "ratio": float(np.median(spread) / np.median(packed)), "identical": bool(same)}


def _rate(n: int | None, args: list[str], out: Path) -> float:
    """Rounds per second of the round loop (from the trace) of one run: under mpiexec -n n, or in process (None)."""
    if n is None:
        from .run import main

        if main([*args, "--eval-points", "2", "--out", str(out), "--overwrite", "--quiet"]) != 0:
            raise RuntimeError(f"run failed: {args}")
    else:
        _sim(n, args, out)
    rounds = read_trace(out).rounds
    return len(rounds["round"]) / max(float(rounds["wall_time"].iloc[-1]), 1e-9)


def numpy_loop(n: int, d: int, rounds: int, samples: int = 2000) -> float:
    """Rounds per second of a hand-vectorised in-process loop of PSGD with B = 1 on logistic regression: one
    generator draws every worker's sample, one einsum each for all N workers' margins and summed gradients."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, samples, d)) / math.sqrt(d), rng.choice([-1.0, 1.0], (n, samples))
    x, workers = np.zeros(d), np.arange(n)
    step, lam = 1.0 / n, 1e-3
    t0 = time.perf_counter()
    for _ in range(rounds):
        idx = rng.integers(0, samples, n)
        Xi, yi = X[workers, idx], y[workers, idx]
        z = np.einsum("nd,d->n", Xi, x)
        g = np.einsum("n,nd->d", -yi / (1.0 + np.exp(yi * z)), Xi)
        x -= step * (g + n * lam * x)
    return rounds / (time.perf_counter() - t0)


def _raw_allreduce(n: int, rounds: int, d: int) -> float:
    res = run_job(n, [sys.executable, str(REPO / "benchmarks" / "raw_allreduce.py"), str(rounds), str(d)], timeout=900)
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    seconds, done = res.stdout.split()
    return int(done) / float(seconds)


def round_rates(n: int, T_mpi: int, T_local: int, runs: int, tmp: Path, d: int = 123,
                allreduce: bool = True, data: Sequence[str] = ()) -> dict[str, object]:
    """Rounds per second of PSGD with B = 1 at N = n, d features (synthetic, d - 1 columns and the intercept), each
    kind alternated `runs` times: the simulator in process, under mpiexec with one rank a worker (exact and
    allreduce reductions), with the N workers on 2 ranks (n > 2), a raw mpi4py Allreduce loop on n ranks, and a
    hand-vectorised numpy loop in process. `allreduce=False` leaves out the simulator's allreduce reduction; `data`:
    more data options for the simulator."""
    base = ["--algorithm", "psgd", "--batch-size", "1", "--features", str(d - 1), *data]
    kinds: dict[str, Callable[[], float]] = {
        "sim_local": lambda: _rate(None, [*base, "--T", str(T_local), "--backend", "local", "--workers", str(n)],
                                   tmp / "rate-local.h5"),
        "sim_mpi": lambda: _rate(n, [*base, "--T", str(T_mpi)], tmp / "rate-mpi.h5"),
        "raw_mpi": lambda: _raw_allreduce(n, T_mpi, d),
        "numpy": lambda: numpy_loop(n, d, T_local),
    }
    if allreduce:
        kinds["sim_mpi_allreduce"] = lambda: _rate(n, [*base, "--T", str(T_mpi), "--reduction", "allreduce"],
                                                   tmp / "rate-mpi-ar.h5")
    if n > 2:
        kinds["sim_mpi_2ranks"] = lambda: _rate(2, [*base, "--T", str(T_mpi), "--workers", str(n)],
                                                tmp / "rate-2ranks.h5")
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(runs):
        for k, fn in kinds.items():
            rates[k].append(fn())
    med = {k: float(np.median(v)) for k, v in rates.items()}
    out: dict[str, object] = {"N": n, "d": d, "T_mpi": T_mpi, "T_local": T_local,
                              **{k: stats(v) for k, v in rates.items()},
                              "raw_over_sim_mpi": med["raw_mpi"] / med["sim_mpi"],
                              "numpy_over_sim_local": med["numpy"] / med["sim_local"]}
    if allreduce:
        out["raw_over_sim_mpi_allreduce"] = med["raw_mpi"] / med["sim_mpi_allreduce"]
    if n > 2:
        out["local_over_2ranks"] = med["sim_local"] / med["sim_mpi_2ranks"]
    return out


class _Listed(BatchSchedule):
    """Batch sizes replayed from a list: the reference a schedule's own cost is measured against."""

    def __init__(self, batches: list[int]) -> None:
        self.batches = batches

    def batch(self, t: int) -> int:
        return self.batches[t - 1]

    def sizes(self) -> Iterator[int]:
        return iter(self.batches)

    def describe(self) -> str:
        return f"listed: {len(self.batches)} batches"


def _cr_psgd_round_time(args: list[str], replay: list[int] | None, out: Path) -> float:
    """Round-loop seconds of an in-process run; with `replay`, CR-PSGD reads its batches from that list (a schedule
    registered for the purpose, as a plug-in would)."""
    from .api import execute
    from .registry import SCHEDULES
    from .run import parse_config

    if replay is not None:
        SCHEDULES.register("bench-replay", lambda setting: _Listed(replay), replace=True)
        args = [*args, "--schedule", "bench-replay"]
    cfg = parse_config([*args, "--out", str(out), "--overwrite", "--quiet"])
    assert cfg is not None
    if execute(cfg).exit_code != 0:
        raise RuntimeError(f"run failed: {args}")
    return float(read_trace(out).rounds["wall_time"].iloc[-1])


def schedule_cost(T_raw: int, T_run: int, workers: int, repeats: int, runs: int, tmp: Path) -> dict[str, object]:
    """CR-PSGD's per-round cost across rho. Raw: ns per round of iterating Geometric(1, rho).within(T_raw).
    Run: rounds/s of an in-process CR-PSGD run (B1 = 1, same T_run for every rho) against the same run with the
    batches replayed from a precomputed list (alternated): the ratio is the schedule's share of a round. Rounds/s
    alone differ with rho because a larger rho spends the same SFO in fewer, larger batches."""
    raw, run = {}, {}
    for rho in SCHEDULE_RHOS:
        rounds = len(list(Geometric(1, rho).within(T_raw)))
        loops = max(1, 200_000 // rounds)

        def iterate(rho: float = rho, loops: int = loops) -> None:
            for _ in range(loops):
                for _ in Geometric(1, rho).within(T_raw):
                    pass

        per = timed(iterate, repeats)
        raw[str(rho)] = {k: v / (loops * rounds) for k, v in per.items()} | {"rounds": rounds}
    for rho in SCHEDULE_RHOS:
        args = ["--backend", "local", "--workers", str(workers), "--algorithm", "cr-psgd", "--B1", "1",
                "--rho", str(rho), "--T", str(T_run), "--eval-points", "2"]
        batches = list(Geometric(1, rho).within(T_run))
        own, replayed = [], []
        for _ in range(runs):
            own.append(_cr_psgd_round_time(args, None, tmp / "own.h5"))
            replayed.append(_cr_psgd_round_time(args, batches, tmp / "replayed.h5"))
        a, b = read_trace(tmp / "own.h5"), read_trace(tmp / "replayed.h5")
        same = np.array_equal(a.rounds["batch_size"], b.rounds["batch_size"]) and equal_iterates(a.x, b.x)
        med, med_replayed = float(np.median(own)), float(np.median(replayed))
        run[str(rho)] = {"rounds": len(batches), "sfo": sum(batches), "own": stats(own), "replayed": stats(replayed),
                         "rounds_per_s": len(batches) / med, "sfo_per_s": sum(batches) / med,
                         "ratio": med / med_replayed, "schedule_us_per_round": (med - med_replayed) / len(batches) * 1e6,
                         "identical": bool(same)}
    ns = [v["median"] for v in raw.values()]
    return {"T_raw": T_raw, "T_run": T_run, "workers": workers, "raw": raw, "run": run,
            "raw_max_over_min": max(ns) / min(ns)}


def _round_time(args: list[str], out: Path, progress: bool) -> float:
    """Round-loop seconds of an in-process run, with the live progress line (written to memory, as to a terminal)
    or without it."""
    import io

    from .comm import make_backend
    from .run import parse_config
    from .session import Run, prepare

    cfg = parse_config([*args, "--out", str(out), "--overwrite", "--quiet"])
    assert cfg is not None
    backend = make_backend(cfg.backend, cfg.workers, cfg.reduction)
    if Run(prepare(cfg, backend), progress=io.StringIO() if progress else False).execute().exit_code != 0:
        raise RuntimeError(f"run failed: {args}")
    return float(read_trace(out).rounds["wall_time"].iloc[-1])


def progress_cost(T: int, runs: int, tmp: Path) -> dict[str, object]:
    """The live progress line's share of a rounds-only run: PSGD B = 1 in process (the most rounds per second, so
    the worst case), with and without the line, alternated."""
    args = ["--backend", "local", "--workers", "10", "--algorithm", "psgd", "--T", str(T), "--eval-points", "2"]
    on, off = [], []
    for _ in range(runs):
        off.append(_round_time(args, tmp / "off.h5", False))
        on.append(_round_time(args, tmp / "on.h5", True))
    return {"T": T, "with": stats(on), "without": stats(off), "ratio": float(np.median(on) / np.median(off))}


def _mm(s: dict[str, float], scale: float = 1.0, unit: str = "s") -> str:
    return f"{s['median'] * scale:.3g} {unit} [{s['min'] * scale:.3g}-{s['max'] * scale:.3g}]"


def _t(seconds: float) -> str:
    """A short time: us below a millisecond, else ms."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def reduction_report(red: Record) -> list[str]:
    """The reduction table, the exact reduction's steps, and the GATHER_ELEMENTS sweep."""
    mpi, local = red["mpi"], red["local"]
    lines = ["reduction, seconds per round of MPIBackend.mean (one row (1, m) a rank; median of repeats, slowest rank) "
             "and of LocalBackend.mean on (N, m) in process (its allreduce is the ordered sum); exact path: "
             f"gather where N*m <= GATHER_ELEMENTS = {red['gather_elements']}",
             "(median, in brackets the fastest repeat, and the ratios of the medians)",
             f"{'N':>3} {'m':>7} {'type':>4} {'exact':>20} {'ordered':>20} {'allreduce':>20} {'ex/allred':>9} "
             f"{'ex/ord':>7} {'path':>11} {'local exact':>12} {'local ord':>10}"]
    for key, job in mpi.items():
        for size, v in job["sizes"].items():
            m, dt = size.split(":")
            e, o, a = (v[k]["median"] for k in ("exact", "ordered", "allreduce"))
            cells = [f"{_t(v[k]['median'])} [{_t(v[k]['min'])}]" for k in ("exact", "ordered", "allreduce")]
            loc = local[key][size]
            lines.append(f"{key[1:]:>3} {m:>7} {dt:>4} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20} {e / a:>9.2f} "
                         f"{e / o:>7.2f} {v['exact_path']:>11} {_t(loc['exact']['median']):>12} "
                         f"{_t(loc['ordered']['median']):>10}")
    for key, job in mpi.items():
        for size, v in job["split"].items():
            total = v["total"]["median"]
            steps = [(name, v[name]["median"]) for name in ("codes", "allreduce_max", "encode", "allreduce_sum",
                                                            "decode")]
            c = sum(t for name, t in steps if not name.startswith("allreduce"))
            lines.append(f"exact reduction's steps at {key}, {size} ({'compiled' if v['compiled'] else 'numpy'}; mean "
                         f"over ranks, median of repeats): " + ", ".join(f"{name} {_t(t)}" for name, t in steps)
                         + f"; total {_t(total)}: steps {c / total:.0%}, collectives {1 - c / total:.0%}")
    for key, job in mpi.items():
        if not job["sweep"]:
            continue
        n = int(key[1:])
        cells = []
        for m, v in job["sweep"].items():
            g, c = v["gather"]["median"], v["collectives"]["median"]
            cells.append(f"N*m={n * int(m)} (m={m}) {_t(g)} vs {_t(c)}, {'gather' if g <= c else 'collectives'}")
        lines.append(f"exact at {key}, gathered vs two collectives (median): " + "; ".join(cells))
    return lines


def report(r: Record) -> str:
    """The results as a printable table."""
    lines = [f"STREAM-like read bandwidth: {r['stream_read_GBps']:.1f} GB/s"]
    for row in r["dense_sweep"]:
        lines.append(f"dense kernel B={row['B']} ({row['MB']:.3g} MB, {row['kernel']}): " + "; ".join(
            f"{name} {row[name]['GBps']:.1f} GB/s = {row[name]['of_read']:.0%}"
            for name in ("aligned", "misaligned", "gathered", "blas")))
    for name, v in r["scale"].items():
        lines.append(f"in process, {name} ({' '.join(v['args'])}): {v['cold_s']:.1f} s, peak {v['cold_MB']:.0f} MB "
                     f"computing f*; {_mm(v['warm'])}, peak {v['warm_MB']:.0f} MB with f* cached")
    for k in r["kernels"]:
        d, s = k["dense"], k["sparse"]
        lines.append(f"kernel B={k['rows']}: dense {_mm(d, 1e3, 'ms')} = {d['GBps']:.1f} GB/s "
                     f"({d['GBps'] / r['stream_read_GBps']:.0%} of read), {d['samples_per_s']:.3g} samples/s; "
                     f"sparse {_mm(s, 1e3, 'ms')} = {s['GBps']:.2f} GB/s, {s['samples_per_s']:.3g} samples/s")
    for key, v in r["sim_vs_raw"].items():
        lines.append(f"simulator vs raw mpi4py loop {key} ({v['rounds']} rounds): {_mm(v['sim'])} vs "
                     f"{_mm(v['raw'])} = {v['ratio']:.2f}x")
    for algo, v in r["local_vs_mpi"].items():
        lines.append(f"in process vs mpiexec, {algo}: {_mm(v['local'])} vs {_mm(v['mpi'])} = {v['speedup']:.1f}x; "
                     f"traces identical: {v['identical']}")
    for key, name in (("growth_T", "T"), ("growth_N", "N")):
        for algo, g in r[key].items():
            lines.append(f"time vs {name}, {algo}: exponent {g['exponent']:.2f} "
                         f"({', '.join(f'{s:.3g}' for s in g['s'])} s)")
    m = r["memory"]
    lines.append(f"peak RSS of the largest rank ({m['ranks']} ranks, median of runs): {m['peak_max_MB']:.0f} MB = "
                 f"shard {m['shard_MB']:.0f} MB + {m['excess_MB']:.0f} MB (worst run {m['peak_worst_MB']:.0f} MB)")
    c = r["reduction_cost"]
    lines.append(f"ordered vs allreduce reduction: {_mm(c['ordered'])} vs {_mm(c['allreduce'])} = "
                 f"{c['ordered_over_allreduce']:.2f}x")
    sc = r["schedule_cost"]
    lines.append(f"CR-PSGD schedule, raw iteration per round (T={sc['T_raw']:.0e}): " + "; ".join(
        f"rho={rho} {_mm(v, 1e9, 'ns')} ({v['rounds']} rounds)" for rho, v in sc["raw"].items())
        + f"; max/min {sc['raw_max_over_min']:.2f}x")
    for rho, v in sc["run"].items():
        lines.append(f"CR-PSGD in process, rho={rho}, T={sc['T_run']}, N={sc['workers']}: {v['rounds']} rounds in "
                     f"{_mm(v['own'])} = {v['rounds_per_s']:.3g} rounds/s ({v['sfo_per_s']:.3g} SFO/s); with the "
                     f"batches replayed {_mm(v['replayed'])}: ratio {v['ratio']:.3f}, schedule "
                     f"{v['schedule_us_per_round']:+.2f} us/round; same batches and x: {v['identical']}")
    pc = r["progress_cost"]
    lines.append(f"progress line, PSGD B=1 in process, {pc['T']} rounds: {_mm(pc['with'])} with vs {_mm(pc['without'])} "
                 f"without = {pc['ratio']:.3f}x")
    lines += reduction_report(r["reductions"])
    return "\n".join(lines + rates_report(r))


def rates_report(r: Record) -> list[str]:
    """Virtual workers on few ranks, and rounds/s against the raw mpi4py and numpy loops."""
    lines = []
    pl = r["placement"]
    lines.append(f"whole job, {pl['workers']} workers on {pl['ranks']} ranks vs one rank a worker "
                 f"({' '.join(pl['args']) or 'default run'}): {_mm(pl['packed'])} vs {_mm(pl['spread'])} = "
                 f"{pl['ratio']:.2f}x; traces identical: {pl['identical']}")
    for v in r["round_rates"].values():
        rate = {k: v[k]["median"] for k in ("sim_local", "sim_mpi", "raw_mpi", "numpy")}
        line = (f"PSGD B=1, N={v['N']}, d={v['d']}, rounds/s (median): simulator in process {rate['sim_local']:.4g}, "
                f"numpy loop {rate['numpy']:.4g} ({v['numpy_over_sim_local']:.2f}x); simulator on {v['N']} ranks "
                f"{rate['sim_mpi']:.4g}, raw mpi4py Allreduce loop {rate['raw_mpi']:.4g} "
                f"({v['raw_over_sim_mpi']:.2f}x)")
        if "sim_mpi_allreduce" in v:
            line += (f"; simulator with --reduction allreduce {v['sim_mpi_allreduce']['median']:.4g} (raw loop "
                     f"{v['raw_over_sim_mpi_allreduce']:.2f}x)")
        if "sim_mpi_2ranks" in v:
            line += (f"; on 2 ranks {v['sim_mpi_2ranks']['median']:.4g} (in process {v['local_over_2ranks']:.2f}x "
                     f"that)")
        lines.append(line)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the benchmark code runs")
    p.add_argument("--json", type=Path, default=Path("bench.json"))
    ns = p.parse_args(argv)
    q = ns.quick
    reps, runs = (3, 1) if q else (9, 3)
    T = 300 if q else 10_000
    r: dict[str, object] = {"quick": q}
    read_GBps = stream_read_bandwidth(1 << (22 if q else 28), reps) / 1e9  # 256 MiB: past the caches
    r["stream_read_GBps"] = read_GBps
    r["kernels"] = [kernel_rates(64, reps * 20), kernel_rates(1024 if q else 32768, reps)]
    llc_rows = math.ceil(1.5 * llc_bytes() / (8 * 785))  # past the LLC
    sweep = [1, 64, 4096] if q else [*(4 ** i for i in range(9)), 1 << 17, 1 << (llc_rows - 1).bit_length()]
    r["dense_sweep"] = dense_sweep(sorted(set(min(b, 1 << 18) for b in sweep)), reps, read_GBps)
    real = ["--dataset", "fashion-mnist"] if FMNIST.exists() and not q else ["--samples", "2000"]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        r["sim_vs_raw"] = {f"N{n}-{a}": sim_vs_raw(n, a, T, prm, runs, tmp)
                           for n in ((2,) if q else (2, 10)) for a, prm in (("psgd", "1"), ("cr-psgd", "1.1"))}
        r["local_vs_mpi"] = {a: local_vs_mpi(2 if q else 10, T, a, runs, tmp) for a in ALGORITHMS}
        r["growth_T"] = growth([100, 300] if q else [1000, 10_000, 100_000, 1_000_000], "T", {"workers": 10}, tmp)
        r["growth_N"] = growth([1, 2] if q else [1, 2, 4, 8, 16], "workers", {"T": T}, tmp)
        r["memory"] = peak_memory(2 if q else 10, real, runs, tmp)
        r["reduction_cost"] = reduction_cost(2 if q else 10, 100 if q else 3000, real, runs, tmp)
        r["scale"] = scale_runs(SCALE_QUICK if q else SCALE, 1 if q else runs, tmp)
        r["schedule_cost"] = schedule_cost(10**6 if q else 10**12, 3000 if q else 200_000, 2, reps, reps, tmp)
        r["progress_cost"] = progress_cost(2000 if q else 100_000, 3 if q else 9, tmp)
        r["reductions"] = reductions((2,) if q else (2, 8, 16), REDUCTION_QUICK if q else REDUCTION_SIZES,
                                     2 if q else 5, 0.02 if q else 0.2,
                                     (2, (1000, "f8")) if q else (8, (100_000, "f8")),
                                     [51, 512] if q else [51, 256, 1024, 4096, 16384])
        r["placement"] = placement(3 if q else 10, 2, ["--T", "100", "--samples", "2000"] if q else [], 1 if q else 3,
                                   tmp)
        r["round_rates"] = {f"N{n}": round_rates(n, 100 if q else 3000, 300 if q else 30_000, 1 if q else 3, tmp,
                                                 allreduce=not q, data=["--samples", "2000"] if q else [])
                            for n in ((2,) if q else (2, 10))}
    ns.json.write_text(json.dumps(r, indent=1))
    print(report(r))
    print(f"results in {ns.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
