"""Per-worker compute-time models (uniform, heterogeneous, shifted-exponential, Pareto) and traces re-timed under them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .netmodel import Network, allreduce_time
from .seeding import Stream, rng_for
from .trace import Trace

#: How a random delay scales: with the round's work (per SFO) or once per round whatever its batch.
PER = ("work", "round")
#: Uniforms drawn at once when re-timing (8 MiB of float64); bounds memory for any N and R.
BLOCK = 1 << 20


class Uniform(NamedTuple):
    """Every worker takes `seconds_per_sfo` per SFO: t[w, r] = s b_r (what `netmodel.modelled_times` assumes)."""

    seconds_per_sfo: float


class Heterogeneous(NamedTuple):
    """Fixed unequal speeds: worker w takes s f_w per SFO, t[w, r] = s f_w b_r (f_w = 2: half speed).
    A synchronous round waits for the slowest worker: it costs s max_w(f_w) b_r."""

    seconds_per_sfo: float
    factors: tuple[float, ...]  # one per worker, > 0


class ShiftedExponential(NamedTuple):
    """Shifted-exponential run time, the standard straggler model of coded computation (Lee et al., IEEE
    Trans. Inf. Theory 2018; Dutta et al., AISTATS 2018):

        t[w, r] = s b_r + u_r * scale * X[w, r],   X ~ Exp(1) i.i.d. over workers and rounds,

    per="work": u_r = s b_r, so t = b_r (s + Exp(mean s * scale)): Lee et al.'s a l + Exp(mu / l) for a
    task of l SFO (a = s, mu = 1 / (s scale)); the slow-down is a random factor 1 + scale X of the work.
    per="round": u_r = 1 second, a delay of mean `scale` seconds per round whatever its batch (OS noise,
    a shared node), on top of s b_r.
    """

    seconds_per_sfo: float
    scale: float
    per: str = "work"


class Pareto(NamedTuple):
    """Heavy-tailed run time (tail index `shape`; infinite variance for shape <= 2):

        t[w, r] = s b_r + u_r * scale * X[w, r],   X ~ Lomax(shape): P(X > x) = (1 + x)^-shape,

    with u_r as in `ShiftedExponential`. With per="work" and scale = 1, t[w, r] ~ Pareto(shape, x_m = s b_r),
    the classic Pareto run time (minimum s b_r, mean s b_r shape / (shape - 1)).
    """

    seconds_per_sfo: float
    shape: float
    scale: float = 1.0
    per: str = "work"


ComputeModel = Uniform | Heterogeneous | ShiftedExponential | Pareto
Random = ShiftedExponential | Pareto


def _check(model: ComputeModel, n: int) -> None:
    if model.seconds_per_sfo < 0:
        raise ValueError(f"seconds_per_sfo must be >= 0, got {model.seconds_per_sfo}")
    if isinstance(model, Heterogeneous):
        if len(model.factors) != n or min(model.factors) <= 0:
            raise ValueError(f"Heterogeneous needs {n} factors > 0, got {model.factors}")
    elif isinstance(model, (ShiftedExponential, Pareto)):
        if model.per not in PER or model.scale < 0:
            raise ValueError(f"per must be one of {PER} and scale >= 0, got {model.per!r}, {model.scale}")
        if isinstance(model, Pareto) and model.shape <= 0:
            raise ValueError(f"Pareto shape must be > 0, got {model.shape}")


def delay_quantile(model: Random, u: np.ndarray) -> np.ndarray:
    """X = F^-1(u) of the model's unit delay: -log(1 - u) (Exp(1)), (1 - u)^(-1/shape) - 1 (Lomax); increasing in u."""
    e = -np.log1p(-u)
    return np.expm1(e / model.shape) if isinstance(model, Pareto) else e


def _scaled(model: Random, work: np.ndarray, x: np.ndarray) -> np.ndarray:
    """s b + u scale x, broadcasting x (rounds, ...) against the per-round work."""
    s = model.seconds_per_sfo
    w = work.reshape(-1, *([1] * (x.ndim - 1)))
    unit = s * w if model.per == "work" else 1.0
    return s * w + unit * model.scale * x


def worker_times(model: ComputeModel, work: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Compute time t[r, w] of every worker in every round (R x n; the definition, for small cases).

    Random models draw one uniform U[r, w] per (round, worker), row-major from rng_for(seed, STRAGGLERS),
    and take X = F^-1(U): round r's delays do not depend on how many rounds are re-timed.
    """
    _check(model, n)
    work = np.asarray(work, dtype=np.float64)
    if isinstance(model, Uniform):
        return np.repeat((model.seconds_per_sfo * work)[:, None], n, axis=1)
    if isinstance(model, Heterogeneous):
        return model.seconds_per_sfo * work[:, None] * np.asarray(model.factors, dtype=np.float64)[None, :]
    u = rng_for(seed, Stream.STRAGGLERS).random((work.size, n))
    return _scaled(model, work, delay_quantile(model, u))


def round_compute_times(model: ComputeModel, work: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """max over workers of `worker_times` per round, without the R x n matrix: the uniforms are drawn in
    blocks of rows (same stream, same order) and, the delay being increasing in U, only each row's max U
    is transformed."""
    _check(model, n)
    work = np.asarray(work, dtype=np.float64)
    if isinstance(model, Uniform):
        return model.seconds_per_sfo * work
    if isinstance(model, Heterogeneous):
        return model.seconds_per_sfo * max(model.factors) * work
    rng = rng_for(seed, Stream.STRAGGLERS)
    rows = max(1, BLOCK // max(n, 1))
    umax = np.empty(work.size)
    for start in range(0, work.size, rows):
        stop = min(start + rows, work.size)
        umax[start:stop] = rng.random((stop - start, n)).max(axis=1)
    return _scaled(model, work, delay_quantile(model, umax))


def comm_times(nbytes: ArrayLike, n: int, net: Network, algorithm: str = "ring") -> np.ndarray:
    """One Allreduce per round (`netmodel.allreduce_time`), evaluated once per distinct payload."""
    values, inverse = np.unique(np.asarray(nbytes), return_inverse=True)
    per_value = np.array([allreduce_time(float(b), n, net, algorithm) for b in values])
    return per_value[inverse.reshape(-1)] if values.size else np.zeros(0)


def retime(sfo: ArrayLike, nbytes: ArrayLike, n: int, net: Network, model: ComputeModel, seed: int = 0,
           algorithm: str = "ring") -> np.ndarray:
    """Cumulative modelled time after each round: the slowest worker's compute for the round's SFO per
    worker (the diff of the cumulative `sfo`; local SGD's H steps of batch b included) plus one Allreduce."""
    sfo = np.asarray(sfo, dtype=np.float64)
    work = np.diff(np.concatenate([[0.0], sfo]))
    return np.cumsum(round_compute_times(model, work, n, seed) + comm_times(nbytes, n, net, algorithm))


def times_at(round_ids: ArrayLike, cumulative: np.ndarray, eval_rounds: ArrayLike) -> np.ndarray:
    """Modelled time at each evaluation: that of the row of `round_ids` (rounds/round) equal to its round;
    round 0 is the start (time 0)."""
    eval_rounds = np.asarray(eval_rounds, dtype=np.int64)
    idx = np.searchsorted(np.asarray(round_ids), eval_rounds)
    later = eval_rounds > 0
    if np.any(idx[later] >= len(cumulative)) or np.any(np.asarray(round_ids)[idx[later]] != eval_rounds[later]):
        raise ValueError("an evaluation refers to a round the trace does not hold")
    return np.where(later, cumulative[np.minimum(idx, len(cumulative) - 1)] if len(cumulative) else 0.0, 0.0)


def trace_eval_times(tr: Trace, net: Network, model: ComputeModel, seed: int | None = None) -> np.ndarray:
    """Modelled time at each evaluation of a trace; the straggler draws are seeded by the trace's own
    seed unless `seed` is given."""
    seed = int(tr.attrs.get("seed", 0)) if seed is None else seed
    cum = retime(tr.rounds["sfo"], tr.rounds["bytes"], int(tr.attrs["N"]), net, model, seed)
    return times_at(tr.rounds["round"], cum, tr.evals["round"])


def time_to_epsilon(times: np.ndarray, metric: np.ndarray, eps: float) -> float:
    """Modelled time of the first evaluation whose metric is <= eps; NaN if none is.
    (The figures interpolate between evaluations instead, with `figures.curves.first_crossing`.)"""
    hit = np.nonzero(np.asarray(metric) <= eps)[0]
    return float(times[hit[0]]) if hit.size else float("nan")
