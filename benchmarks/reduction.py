"""What one round of `MPIBackend.mean` costs with each reduction (exact, ordered, allreduce), in one job.

mpiexec -n N python benchmarks/reduction.py [--sizes 51:f8,10000:f8,...] [--repeats R] [--target S]
    [--split M:DTYPE] [--sweep M1,M2,...]

Every rank holds one worker with one row (1, m) of standard normal numbers. For each size: a warm-up, then the
number of rounds that takes about `--target` seconds (the slowest reduction's, agreed by all ranks), timed
`--repeats` times for each reduction in turn (alternated, so that drift falls on all three alike); a repeat's time
is the slowest rank's. `--split`: the exact reduction's steps timed one by one (codes, MAX collective, encode, SUM
collective, decode; the mean over the ranks). `--sweep`: the exact reduction through its gathered path and through
its two collectives (GATHER_ELEMENTS forced above or below N * m) at these m, float64: the threshold's crossover.
Rank 0 prints one JSON object: seconds per round, median/min/max over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

import crpsgd_mpi.comm.mpi as mpi_module  # noqa: E402
from crpsgd_mpi.comm.exact import GATHER_ELEMENTS, ExactSum  # noqa: E402
from crpsgd_mpi.comm.mpi import MPIBackend  # noqa: E402

REDUCTIONS = ("exact", "ordered", "allreduce")
DTYPES = {"f8": np.float64, "f4": np.float32}


def stats(values: list[float]) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def size_list(text: str) -> list[tuple[int, str]]:
    out = []
    for item in text.split(","):
        m, _, dt = item.partition(":")
        out.append((int(float(m)), dt or "f8"))
    return out


class Bench:
    def __init__(self, be: MPIBackend, repeats: int, target: float) -> None:
        self.be, self.comm, self.MPI = be, be.comm, be.MPI
        self.repeats, self.target = repeats, target

    def slowest(self, seconds: float) -> float:
        return float(self.comm.allreduce(seconds, op=self.MPI.MAX))

    def rows(self, m: int, dtype: type) -> np.ndarray:
        return np.random.default_rng(self.be.rank).standard_normal((1, m)).astype(dtype)

    def loop(self, rows: np.ndarray, rounds: int) -> float:
        mean = self.be.mean
        self.comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(rounds):
            mean(rows)
        return self.slowest(time.perf_counter() - t0)

    def rounds_for(self, rows: np.ndarray, modes: dict[str, object]) -> int:
        """Warm-up of every mode, then the rounds that take about `target` seconds in the slowest of them."""
        per = 0.0
        for setup in modes.values():
            setup()  # type: ignore[operator]
            self.loop(rows, 3)
            per = max(per, self.loop(rows, 5) / 5)
        return int(np.clip(self.target / max(per, 1e-7), 5, 20_000))

    def compare(self, rows: np.ndarray, modes: dict[str, object]) -> dict[str, object]:
        rounds = self.rounds_for(rows, modes)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for r in range(self.repeats):
            order = list(modes)
            order = order[r % len(order):] + order[:r % len(order)]
            for mode in order:
                modes[mode]()  # type: ignore[operator]
                times[mode].append(self.loop(rows, rounds) / rounds)
        return {"rounds": rounds, **{mode: stats(t) for mode, t in times.items()}}

    def reductions(self, m: int, dt: str) -> dict[str, object]:
        def use(mode: str):
            def set_mode() -> None:
                self.be.reduction = mode
            return set_mode

        rows = self.rows(m, DTYPES[dt])
        res = self.compare(rows, {mode: use(mode) for mode in REDUCTIONS})
        res["exact_path"] = "gather" if self.be.n_workers * m <= GATHER_ELEMENTS else "collectives"
        return res

    def sweep(self, m: int) -> dict[str, object]:
        """The exact reduction at m float64 elements through either path."""
        def threshold(value: int):
            def set_threshold() -> None:
                mpi_module.GATHER_ELEMENTS = value
            return set_threshold

        self.be.reduction = "exact"
        rows = self.rows(m, np.float64)
        res = self.compare(rows, {"gather": threshold(1 << 62), "collectives": threshold(-1)})
        mpi_module.GATHER_ELEMENTS = GATHER_ELEMENTS
        return res

    def split(self, m: int, dt: str) -> dict[str, object]:
        """The exact reduction's two collectives and three compiled (or numpy) steps, timed one by one."""
        be, comm, MPI = self.be, self.comm, self.MPI
        rows = self.rows(m, DTYPES[dt])
        ex = ExactSum(be.n_workers, m, rows.dtype)
        names = ("codes", "allreduce_max", "encode", "allreduce_sum", "decode")

        def rounds(k: int) -> np.ndarray:
            acc = np.zeros(len(names))
            comm.Barrier()
            for _ in range(k):
                t0 = time.perf_counter()
                code = ex.codes(rows)
                t1 = time.perf_counter()
                be._wait(comm.Iallreduce(MPI.IN_PLACE, code, op=MPI.MAX))
                t2 = time.perf_counter()
                words = ex.encode(rows, code)
                t3 = time.perf_counter()
                be._wait(comm.Iallreduce(MPI.IN_PLACE, words, op=MPI.SUM))
                t4 = time.perf_counter()
                ex.decode(words, code)
                t5 = time.perf_counter()
                acc += (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
            return acc / k

        rounds(3)
        per = self.slowest(float(rounds(5).sum()))
        k = int(np.clip(self.target / max(per, 1e-7), 5, 20_000))
        reps = []
        for _ in range(self.repeats):
            mine = rounds(k)
            total = np.empty_like(mine)
            comm.Allreduce(mine, total, op=MPI.SUM)
            reps.append(total / be.n_ranks)
        steps = {name: stats([float(r[i]) for r in reps]) for i, name in enumerate(names)}
        return {"rounds": k, "compiled": ex.compiled is not None, **steps,
                "total": stats([float(r.sum()) for r in reps])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=size_list, default=size_list("51:f8,10000:f8,100000:f8,270000:f4"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target", type=float, default=0.2, help="seconds of one timed loop (default 0.2)")
    p.add_argument("--split", type=size_list, default=[])
    p.add_argument("--sweep", type=lambda s: [int(float(v)) for v in s.split(",")], default=[])
    ns = p.parse_args()
    be = MPIBackend()
    bench = Bench(be, ns.repeats, ns.target)
    out: dict[str, object] = {"ranks": be.n_ranks, "gather_elements": GATHER_ELEMENTS, "repeats": ns.repeats,
                              "sizes": {f"{m}:{dt}": bench.reductions(m, dt) for m, dt in ns.sizes}}
    out["split"] = {f"{m}:{dt}": bench.split(m, dt) for m, dt in ns.split}
    out["sweep"] = {str(m): bench.sweep(m) for m in ns.sweep}
    be.close()
    if be.rank == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
