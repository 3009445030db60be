"""The update rule and the step-size schedules: every rule against a naive re-implementation (plain loops over the
same random streams) through the real algorithms, the step size of every round in the trace, plain SGD's bits
unchanged, exact resume with momentum buffers (in process and across backends), a plug-in schedule from a file,
and bad values refused in one line."""

from __future__ import annotations

import math
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_algorithms import naive_grad, setup_naive

from conftest import REPO, mpi_run, run_cli
from crpsgd_mpi.config import Config
from crpsgd_mpi.optim import CosineGamma, StepGamma, StepSizes, cos_pi
from crpsgd_mpi.testing import check_algorithm, check_gamma_schedule
from crpsgd_mpi.trace import Trace, read_trace

TINY = ["--samples", "300", "--features", "4", "--backend", "local", "--eval-points", "4", "--lam", "1e-3"]


def run(tmp_path: Path, *args: str, name: str = "t.h5") -> Trace:
    out = tmp_path / name
    assert run_cli(*TINY, *args, "--out", str(out), "--overwrite") == 0
    return read_trace(out)


# -- the naive re-implementation ----------------------------------------------------------------------------------
def naive_gamma(t: int, R: int, gamma: float, kind: str, factor: float = 0.1, milestones: tuple[int, ...] = (),
                every: int = 0, warmup: int = 0) -> float:
    """gamma_t as the README states it, with the C library's cosine."""
    f = 1.0
    if kind == "step":
        k = (t - 1) // every if every else sum(1 for m in milestones if m < t)
        for _ in range(k):
            f = f * factor
    elif kind == "cosine":
        f = (1.0 + math.cos(math.pi * (t - 1) / R)) / 2.0
    g = gamma * f
    if t < warmup:
        g = g * t / warmup
    return g


class NaiveRule:
    """Heavy ball / Nesterov / decoupled weight decay on one iterate, written out: v <- beta v + g;
    d = g + beta v (Nesterov) or v; x <- (1 - gamma wd) x; x <- x - gamma d."""

    def __init__(self, beta: float, nesterov: bool, wd: float) -> None:
        self.beta, self.nesterov, self.wd = beta, nesterov, wd
        self.v: np.ndarray | None = None

    def step(self, x: np.ndarray, g: np.ndarray, gamma: float) -> np.ndarray:
        if self.v is None:
            self.v = np.zeros_like(g)
        self.v = self.beta * self.v + g
        d = g + self.beta * self.v if self.nesterov else self.v
        return (1.0 - gamma * self.wd) * x - gamma * d


def worker_grads(shards: list, rngs: list, x: np.ndarray | list[np.ndarray], B: int, lam: float) -> list[np.ndarray]:
    xs = x if isinstance(x, list) else [x] * len(shards)
    out = []
    for s, rng, xi in zip(shards, rngs, xs):
        idx = rng.integers(0, s.n, size=B)
        out.append(naive_grad(s.X[idx], s.y[idx], xi, lam))
    return out


def assert_gammas(tr: Trace, want: list[float], exact: bool = True) -> None:
    got = tr.rounds["gamma"].to_numpy()
    assert len(got) == len(want)
    if exact:
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-16 * max(want))


# -- gamma_t itself ------------------------------------------------------------------------------------------------
def test_cos_pi_is_the_cosine_to_the_last_bits() -> None:
    for R in (1, 2, 3, 7, 79, 937, 4096):
        for t in range(R + 1):
            assert abs(cos_pi(Fraction(t, R)) - math.cos(math.pi * t / R)) <= 4e-16
    assert cos_pi(Fraction(0)) == 1.0 and cos_pi(Fraction(1)) == -1.0 and cos_pi(Fraction(1, 2)) == 0.0
    assert cos_pi(Fraction(-1, 3)) == cos_pi(Fraction(1, 3)) == cos_pi(Fraction(5, 3))


@pytest.mark.parametrize("kind, kw, warmup", [("step", {"milestones": (3, 7)}, 0), ("step", {"every": 4}, 5),
                                              ("step", {"every": 1, "factor": 0.5}, 0), ("cosine", {}, 0),
                                              ("cosine", {}, 4), ("constant", {}, 3)])
def test_step_sizes_follow_the_formulas(kind: str, kw: dict, warmup: int) -> None:
    R, gamma = 20, 0.3
    factor = kw.get("factor", 0.1)
    schedule = {"step": lambda: StepGamma(factor, kw.get("milestones", ()), kw.get("every", 0)),
                "cosine": CosineGamma}.get(kind, lambda: None)()
    steps = StepSizes(gamma, schedule, warmup, R) if schedule is not None else StepSizes(gamma, warmup=warmup, rounds=R)
    got = [steps(t) for t in range(1, R + 1)]
    want = [naive_gamma(t, R, gamma, kind, factor, kw.get("milestones", ()), kw.get("every", 0), warmup)
            for t in range(1, R + 1)]
    if kind == "cosine":
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-16)
        assert got[0] == gamma * (1.0 if warmup <= 1 else 1.0 / warmup) and got[-1] > 0
    else:
        assert got == want
    assert [steps(t) for t in (5, 2, 9)] == [got[4], got[1], got[8]]  # a function of t: asked out of order too


# -- the rules through the real algorithms ------------------------------------------------------------------------
@pytest.mark.parametrize("beta, nesterov, wd, kind, extra, warmup", [
    (0.9, False, 0.0, "constant", [], 0),
    (0.7, True, 0.0, "step", ["--gamma-milestones", "3,6"], 0),
    (0.0, False, 0.05, "cosine", [], 0),
    (0.5, True, 0.02, "step", ["--gamma-every", "2", "--gamma-factor", "0.8"], 3),
    (0.8, False, 0.0, "cosine", [], 4),
])
def test_cr_psgd_follows_the_naive_rule(tmp_path: Path, beta: float, nesterov: bool, wd: float, kind: str,
                                        extra: list[str], warmup: int) -> None:
    N, T, B1, rho, gamma, lam, seed = 3, 80, 2, 1.3, 0.5, 1e-3, 11
    args = ["--workers", str(N), "--T", str(T), "--B1", str(B1), "--rho", str(rho), "--gamma", str(gamma),
            "--seed", str(seed), "--momentum", str(beta), "--weight-decay", str(wd), "--gamma-schedule", kind,
            "--warmup-rounds", str(warmup), *extra, *(["--nesterov"] if nesterov else [])]
    tr = run(tmp_path, *args)
    batches = tr.rounds["batch_size"].tolist()
    R = len(batches)
    milestones = (3, 6) if "--gamma-milestones" in extra else ()
    every, factor = (2, 0.8) if "--gamma-every" in extra else (0, 0.1)
    shards, rngs = setup_naive(N, seed)
    x = np.zeros(shards[0].X.shape[1])
    rule, gammas = NaiveRule(beta, nesterov, wd), []
    for t, B in enumerate(batches, start=1):
        g = sum(worker_grads(shards, rngs, x, B, lam)) / N
        gammas.append(naive_gamma(t, R, gamma, kind, factor, milestones, every, warmup))
        x = rule.step(x, g, gammas[-1])
    np.testing.assert_allclose(tr.x, x, rtol=1e-11, atol=1e-13)
    assert_gammas(tr, gammas, exact=kind != "cosine")
    cfg = tr.config  # the optimiser's settings are recorded with the others
    assert (cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["gamma_schedule"], cfg["warmup_rounds"]) == \
        (beta, nesterov, wd, kind, warmup)


def test_psgd_nesterov_cosine(tmp_path: Path) -> None:
    N, T, B, gamma, seed = 2, 60, 3, 0.4, 5
    tr = run(tmp_path, "--algorithm", "psgd", "--workers", str(N), "--T", str(T), "--batch-size", str(B), "--gamma",
             str(gamma), "--seed", str(seed), "--momentum", "0.6", "--nesterov", "--gamma-schedule", "cosine")
    shards, rngs = setup_naive(N, seed)
    x = np.zeros(shards[0].X.shape[1])
    rule, R, gammas = NaiveRule(0.6, True, 0.0), T // B, []
    for t in range(1, R + 1):
        gammas.append(naive_gamma(t, R, gamma, "cosine"))
        x = rule.step(x, sum(worker_grads(shards, rngs, x, B, 1e-3)) / N, gammas[-1])
    np.testing.assert_allclose(tr.x, x, rtol=1e-11, atol=1e-13)
    assert_gammas(tr, gammas, exact=False)


@pytest.mark.parametrize("how", ["keep", "average", "reset"])
def test_local_sgd_momentum_per_worker(tmp_path: Path, how: str) -> None:
    N, T, H, b, gamma, beta, seed = 3, 60, 4, 2, 0.3, 0.7, 5
    tr = run(tmp_path, "--algorithm", "local-sgd", "--workers", str(N), "--T", str(T), "--period", str(H),
             "--local-batch", str(b), "--gamma", str(gamma), "--seed", str(seed), "--momentum", str(beta),
             "--momentum-average", how, "--gamma-schedule", "step", "--gamma-milestones", "2", "--gamma-factor", "0.5")
    shards, rngs = setup_naive(N, seed)
    d = shards[0].X.shape[1]
    x, rules, R = np.zeros(d), [NaiveRule(beta, False, 0.0) for _ in range(N)], T // (H * b)
    for r in range(1, R + 1):
        gam = naive_gamma(r, R, gamma, "step", 0.5, (2,))
        models = [x.copy() for _ in range(N)]
        for _ in range(H):
            grads = worker_grads(shards, rngs, models, b, 1e-3)
            models = [rule.step(m, g, gam) for rule, m, g in zip(rules, models, grads)]
        x = sum(models) / N
        if how == "average":
            v = sum(rule.v for rule in rules) / N
            for rule in rules:
                rule.v = v.copy()
        elif how == "reset":
            for rule in rules:
                rule.v = np.zeros(d)
    np.testing.assert_allclose(tr.x, x, rtol=1e-11, atol=1e-13)
    assert_gammas(tr, [gamma] * 2 + [gamma * 0.5] * (R - 2))
    width = 2 * d if how == "average" else d  # the averaged buffers ride in the same round: counted
    assert (tr.rounds["bytes"] == 8 * width).all() and len(tr.rounds) == R  # no round more, no SFO more
    assert tr.rounds["sfo"].iloc[-1] == R * H * b


def test_catalyst_momentum_restarts_each_outer_step(tmp_path: Path) -> None:
    N, T, B1, rho, gamma, theta, lam, seed = 2, 32, 1, 2.0, 0.4, 0.7, 1e-3, 3
    tr = run(tmp_path, "--algorithm", "catalyst", "--workers", str(N), "--T", str(T), "--B1", str(B1), "--rho",
             str(rho), "--gamma", str(gamma), "--theta", str(theta), "--seed", str(seed), "--momentum", "0.5",
             "--gamma-schedule", "step", "--gamma-every", "5", "--gamma-factor", "0.5")
    shards, rngs = setup_naive(N, seed)
    y = np.zeros(shards[0].X.shape[1])
    K, inner = math.isqrt(N * T), math.isqrt(T // N)  # 8 outer steps of batches 1, 2: 16 rounds
    t, gammas = 0, []
    for _ in range(K):
        x, used, B, i, rule = y.copy(), 0, B1, 1, NaiveRule(0.5, False, 0.0)  # momentum from zero
        while used + B <= inner:
            t += 1  # the schedule counts the run's rounds, not the stage's
            gammas.append(naive_gamma(t, 2 * K, gamma, "step", 0.5, every=5))
            g = sum(worker_grads(shards, rngs, x, B, lam)) / N + theta * (x - y)
            x = rule.step(x, g, gammas[-1])
            used, B, i = used + B, math.floor(rho**i * B1), i + 1
        y = x
    np.testing.assert_allclose(tr.x, y, rtol=1e-11, atol=1e-13)
    assert_gammas(tr, gammas)


# -- plain SGD keeps its bits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cr-psgd-N4", "local-sgd-stich", "catalyst-l2-N3", "psgd-B3"])
def test_plain_rule_gives_the_recorded_digests(tmp_path: Path, name: str) -> None:
    """Momentum 0, no weight decay, a constant step, given explicitly: the digests test_reference.py recorded."""
    import test_reference as ref

    out = tmp_path / "t.h5"
    assert run_cli(*ref.CASES[name], "--momentum", "0", "--no-nesterov", "--weight-decay",
                   "0", "--gamma-schedule", "constant", "--warmup-rounds", "0", "--momentum-average", "average",
                   "--out", str(out)) == 0
    assert ref.digest(out) == ref.DIGESTS[name]
    tr = read_trace(out)
    assert (tr.rounds["gamma"] == tr.config["gamma"]).all()


# -- exact resume --------------------------------------------------------------------------------------------------
#: The kit's problem, shorter (checkpoints every 7 rounds, not every round: each one copies the trace).
KIT = {"T": 600, "checkpoint_every": "7"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("algorithm, params", [
    ("cr-psgd", {"rho": 1.05, "momentum": 0.9, "nesterov": True, "gamma": 0.5, "gamma_schedule": "cosine",
                 "warmup_rounds": 5}),
    ("local-sgd", {"period": 5, "momentum": 0.8, "weight_decay": 0.01, "gamma": 0.5, "gamma_schedule": "step",
                   "gamma_every": 7}),
    ("local-sgd", {"period": 3, "momentum": 0.8, "momentum_average": "average", "gamma": 0.5}),
    ("catalyst", {"momentum": 0.5, "gamma": 0.3, "gamma_schedule": "cosine", "T": 300}),
])
def test_exact_resume_with_momentum_in_process(algorithm: str, params: dict) -> None:
    """The conformance kit: stopped halfway, resumed from a checkpoint, equal bit for bit (rounds/gamma included)."""
    report = check_algorithm(algorithm, mpi=False, **{**KIT, **params})
    assert any("exact resume" in p for p in report.passed), str(report)


def test_checkpoint_holds_every_workers_buffer(tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli(*TINY, "--workers", "3", "--T", "200", "--algorithm", "local-sgd", "--period", "4", "--momentum",
                   "0.9", "--gamma", "0.3", "--checkpoint-every", "2", "--fault", "0:5", "--out", str(out)) == 1
    with h5py.File(out) as f:
        rows = f["checkpoint/algorithm/workers/velocity"][()]
        assert rows.shape == (3, 5) and np.unique(rows, axis=0).shape[0] == 3  # kept: one buffer per worker
    assert run_cli("--resume", str(out)) == 0


def test_a_trace_without_rounds_gamma_resumes(tmp_path: Path) -> None:
    """A trace of schema 2 (no rounds/gamma) goes on: the column is added, NaN for the rounds recorded before."""
    out = tmp_path / "t.h5"
    assert run_cli(*TINY, "--workers", "2", "--T", "300", "--algorithm", "psgd", "--gamma", "0.3", "--checkpoint-every",
                   "10", "--fault", "0:25", "--out", str(out)) == 1
    with h5py.File(out, "r+") as f:
        del f["rounds/gamma"]
    assert run_cli("--resume", str(out)) == 0
    g = read_trace(out).rounds["gamma"].to_numpy()
    assert len(g) == 300 and np.isnan(g[:20]).all() and (g[20:] == 0.3).all()


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_resume_across_backends_with_per_worker_momentum(tmp_path: Path) -> None:
    """local SGD with a buffer per worker: stopped under mpiexec -n 2, resumed in process; stopped in process,
    resumed under mpiexec -n 2: both equal the run never stopped."""
    args = ["--samples", "2000", "--features", "5", "--T", "2000", "--algorithm", "local-sgd", "--period", "5",
            "--local-batch", "2", "--momentum", "0.8", "--gamma", "0.5", "--gamma-schedule", "cosine", "--quiet"]
    ref = tmp_path / "ref.h5"
    assert run_cli("--backend", "local", "--workers", "2", *args, "--out", str(ref), "--checkpoint-every", "off") == 0
    want = read_trace(ref)
    a = tmp_path / "a.h5"
    res = mpi_run(2, [*args, "--out", str(a), "--checkpoint-every", "30", "--fault", "1:100"], timeout=120)
    assert res.returncode == 1 and not res.timed_out
    assert run_cli("--resume", str(a)) == 0
    b = tmp_path / "b.h5"
    assert run_cli("--backend", "local", "--workers", "2", *args, "--out", str(b), "--checkpoint-every", "30",
                   "--fault", "0:100") == 1
    res = mpi_run(2, ["--resume", str(b)], timeout=120)
    assert res.returncode == 0 and not res.timed_out, res.stderr
    for path, resumed_on in ((a, "local"), (b, "mpi")):
        got = read_trace(path)
        assert got.status == "complete" and got.attrs["resumes"][-1]["after_round"] == 90
        assert got.attrs["resumes"][-1]["backend"] == resumed_on
        for c in want.rounds.columns:
            if c != "wall_time":
                assert np.array_equal(got.rounds[c], want.rounds[c]), (path.name, c)
        assert np.array_equal(got.evals["loss"], want.evals["loss"]) and np.array_equal(got.x, want.x), path.name


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_momentum_in_process_equals_mpiexec() -> None:
    """The kit under mpiexec -n 3: CR-PSGD with Nesterov momentum, weight decay, cosine steps and a warm-up gives the
    in-process trace bit for bit (and resumes exactly)."""
    report = check_algorithm("cr-psgd", mpi=True, **KIT, rho=1.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                             gamma=0.5, gamma_schedule="cosine", warmup_rounds=3)
    assert any("mpiexec" in p for p in report.passed), str(report)


# -- a plug-in schedule --------------------------------------------------------------------------------------------
PLUGIN = '''
"""A plug-in step-size schedule: gamma_t = gamma / (1 + my_param (t - 1))."""
from crpsgd_mpi import GAMMA_SCHEDULES, GammaSchedule
from crpsgd_mpi.params import Param


class Inverse(GammaSchedule):
    def __init__(self, a: float) -> None:
        self.a = a

    def factor(self, t, rounds):
        return 1.0 / (1.0 + self.a * (t - 1))

    def describe(self):
        return f"inverse: gamma / (1 + {self.a:g} (t - 1))"


@GAMMA_SCHEDULES.register("mine", params=(Param("my_param", "float", 1.0, "decay rate", low=0.0),))
def mine(setting):
    """gamma / (1 + my_param (t - 1))."""
    return Inverse(setting.cfg.param("my_param"))
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "mine_gamma.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return path


def test_plugin_gamma_schedule_from_a_file(tmp_path: Path, plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tr = run(tmp_path, "--plugin", str(plugin), "--gamma-schedule", "mine", "--my-param", "2", "--workers", "2",
             "--T", "100", "--algorithm", "psgd", "--batch-size", "5", "--gamma", "0.5", "--momentum", "0.5")
    assert_gammas(tr, [0.5 * (1.0 / (1.0 + 2.0 * (t - 1))) for t in range(1, 21)])
    assert tr.config["my_param"] == 2.0 and tr.config["gamma_schedule"] == "mine"
    report = check_gamma_schedule("mine", plugin=str(plugin), mpi=False, my_param=0.5, gamma=0.5, **KIT)
    assert any("factor(t, R)" in p for p in report.passed)
    # its parameter without its schedule: one line, naming the option that selects it
    assert run_cli(*TINY, "--plugin", str(plugin), "--my-param", "2", "--out", str(tmp_path / "x.h5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gamma-schedule mine" in err[0]


@pytest.mark.parametrize("name, params", [("step", {"gamma_milestones": "5,20", "gamma_factor": 0.5}),
                                          ("cosine", {"warmup_rounds": 4})])
def test_builtin_gamma_schedules_pass_the_kit(name: str, params: dict) -> None:
    report = check_gamma_schedule(name, mpi=False, gamma=0.5, momentum=0.5, **KIT, **params)
    assert any("factor(t, R)" in p for p in report.passed)


OWN_STEP = '''
"""A plug-in algorithm that steps on its own (x -= gamma g), never asking for the run's update rule."""
import numpy as np
from crpsgd_mpi import ALGORITHMS

base = ALGORITHMS.get("psgd")


@ALGORITHMS.register("own-step")
class OwnStep(base):
    """PSGD that writes its own step."""

    def run(self, workers, x0, resume=None):
        x = np.array(x0, dtype=workers.dtype)
        for _ in range(self.T // self.schedule.B):
            x -= self.gamma * workers.average(workers.gradients(x, self.schedule.B))
            workers.end_round(x)
        return x
'''


def test_an_algorithm_that_ignores_the_rule_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "own_step.py"
    plugin.write_text(OWN_STEP)
    tr = run(tmp_path, "--plugin", str(plugin), "--algorithm", "own-step", "--workers", "2", "--T", "20")
    assert np.isnan(tr.rounds["gamma"]).all() and len(tr.rounds) == 20  # plain SGD: it runs; its steps unknown
    capsys.readouterr()
    out = tmp_path / "m.h5"
    assert run_cli(*TINY, "--plugin", str(plugin), "--algorithm", "own-step", "--workers", "2", "--T", "20",
                   "--momentum", "0.9", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "momentum=0.9" in err[0] and "workers.optimizer" in err[0], err
    assert read_trace(out).status == "failed" and len(read_trace(out).rounds) == 1


# -- bad values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, field", [
    (["--momentum", "-0.1"], "momentum"), (["--momentum", "1"], "momentum"), (["--momentum", "nan"], "momentum"),
    (["--nesterov"], "nesterov"), (["--weight-decay", "-1"], "weight_decay"), (["--warmup-rounds", "-2"], "warmup_rounds"),
    (["--momentum-average", "mean"], "momentum_average"), (["--gamma-schedule", "linear"], "gamma_schedule"),
    (["--gamma-schedule", "step", "--gamma-milestones", "200,100"], "gamma_milestones"),
    (["--gamma-schedule", "step", "--gamma-milestones", "0,10"], "gamma_milestones"),
    (["--gamma-schedule", "step", "--gamma-milestones", "10,x"], "gamma_milestones"),
    (["--gamma-schedule", "step"], "gamma_milestones"),
    (["--gamma-schedule", "step", "--gamma-every", "3", "--gamma-milestones", "5"], "gamma_every"),
    (["--gamma-schedule", "step", "--gamma-every", "3", "--gamma-factor", "0"], "gamma_factor"),
    (["--gamma-schedule", "step", "--gamma-every", "3", "--gamma-factor", "-0.5"], "gamma_factor"),
    (["--gamma-schedule", "step", "--gamma-every", "-3"], "gamma_every"),
    (["--gamma-milestones", "5"], "gamma_milestones"),
    (["--gamma-schedule", "cosine", "--schedule", "norm-test"], "gamma_schedule"),
    (["--gamma-schedule", "cosine", "--schedule", "norm-test", "--algorithm", "catalyst"], "gamma_schedule"),
])
def test_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_toml_keys_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.toml"
    p.write_text('momentum = 0.9\nnesterov = true\ngamma-schedule = "step"\ngamma-milestones = "10,20"\n')
    cfg = Config.from_toml(p)
    assert cfg.momentum == 0.9 and cfg.nesterov and cfg.param("gamma_milestones") == "10,20"
    label = Config.from_toml(p, {"T": 50}).distinguishing()
    assert {("momentum", 0.9), ("nesterov", True), ("gamma_schedule", "step"), ("gamma_milestones", "10,20")} <= \
        set(label) and not any(k in ("weight_decay", "warmup_rounds") for k, _ in label)  # the defaults are not named
    assert run_cli("--help", "--gamma-schedule", "step") == 0
    text = capsys.readouterr().out
    assert "--gamma-milestones" in text and "--momentum-average" in text and "--warmup-rounds" in text


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-x", "-p", "no:cacheprovider", "--rootdir", str(REPO)]))
