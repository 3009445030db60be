"""Networks as problems (the [torch] extra): exact counts of CR-PSGD on a network, float32 payloads with BatchNorm's
averaged statistics, in-process vs mpiexec bit for bit, CIFAR-10 files end to end, the refusals a network needs, the
evaluation budget and the test subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cifar_files import write_cifar10  # noqa: E402

from conftest import mpi_run, run_cli  # noqa: E402
from crpsgd_mpi import simulate  # noqa: E402
from crpsgd_mpi.config import Config  # noqa: E402
from crpsgd_mpi.ledger import EVAL_COST, EVAL_SHARE, EvalBudget, evaluation_budget  # noqa: E402
from crpsgd_mpi.problems.nets import cnn  # noqa: E402
from crpsgd_mpi.registry import Setting  # noqa: E402
from crpsgd_mpi.schedules import Geometric  # noqa: E402
from crpsgd_mpi.trace import read_trace  # noqa: E402

SIZES = (60, 60, 60, 60, 60)  # 300 training images, and 40 test images


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(folder, "python", sizes=SIZES, test_size=40)
    return folder.parent


def net_args(cifar: Path, *extra: str) -> list[str]:
    return ["--model", "cnn", "--dataset", f"cifar10:{cifar}", "--gamma", "0.05", "--regularizer", "none",
            "--eval-points", "4", "--eval-samples", "64", *extra]


def params_and_buffers() -> tuple[int, int]:
    model = cnn(10, 3)
    return sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers() if b.is_floating_point())


@pytest.mark.parametrize("T, B1, rho", [(400, 1, 2.0), (300, 2, 1.5)])
def test_cr_psgd_on_a_network_counts_equal_closed_form(tmp_path: Path, cifar: Path, T: int, B1: int,
                                                       rho: float) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "3", *net_args(cifar, "--T", str(T), "--B1", str(B1),
                                                                          "--rho", str(rho)), "--out", str(out)) == 0
    tr = read_trace(out)
    R, sfo = Geometric(B1, rho).rounds_and_sfo(T)
    assert len(tr.rounds) == R and tr.rounds["sfo"].iloc[-1] == sfo
    assert tr.rounds["batch_size"].tolist() == list(Geometric(B1, rho).within(T))
    dim, buffers = params_and_buffers()
    assert tr.config["n_features"] == dim and tr.config["dtype"] == "float32" and tr.x.dtype == np.float32
    assert (tr.rounds["bytes"] == (dim + buffers) * 4).all()  # float32 gradient + BatchNorm's running statistics
    assert np.isnan(tr.evals["grad_norm_sq"]).all() and tr.evals["test_accuracy"].between(0, 1).all()
    assert (tr.evals["test_loss"] > 0).all()


def test_batchnorm_statistics_are_averaged_every_round(cifar: Path) -> None:
    """After each round every worker holds the same running statistics: their average."""
    from crpsgd_mpi.algorithms import PSGD
    from crpsgd_mpi.comm import LocalBackend
    from crpsgd_mpi.config import Config
    from crpsgd_mpi.ledger import Ledger
    from crpsgd_mpi.problems import PROBLEMS
    from crpsgd_mpi.workers import Workers

    cfg = Config(model="cnn", dataset=f"cifar10:{cifar}", gamma=0.05, regularizer="none", T=6, batch_size=2)
    problem = PROBLEMS.build("cnn", Setting(cfg, 3))
    workers = Workers(LocalBackend(3), problem, 0, Ledger())
    seen = []

    def check(x: np.ndarray, stage_end: bool) -> None:
        b = problem.buffers()
        seen.append(np.ptp(b, axis=0).max())

    workers.on_round = check
    grads = workers.gradients(problem.initial_point(), 2)
    assert np.ptp(problem.buffers(), axis=0).max() > 0  # each worker normalised its own batch
    PSGD.create(Setting(cfg, 3, None)).run(workers, problem.initial_point())
    assert len(seen) == 3 and max(seen) == 0.0 and grads.dtype == np.float32


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_two_ranks_equal_the_in_process_run(tmp_path: Path, cifar: Path) -> None:
    args = net_args(cifar, "--algorithm", "cr-psgd", "--T", "300", "--rho", "1.5", "--test-samples", "25")
    res = mpi_run(2, [*args, "--out", str(tmp_path / "mpi.h5"), "--quiet"], timeout=200)
    assert res.returncode == 0 and not res.timed_out
    assert run_cli("--backend", "local", "--workers", "2", *args, "--out", str(tmp_path / "local.h5")) == 0
    a, b = read_trace(tmp_path / "mpi.h5"), read_trace(tmp_path / "local.h5")
    for c in ("round", "sfo", "batch_size", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in a.evals.columns:
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), c
    assert np.array_equal(a.x, b.x)  # one torch thread per process: the same bits (measured; see README)
    assert a.config["test_samples"] == b.config["test_samples"] == 25


def test_local_sgd_and_catalyst_run_on_a_network(cifar: Path) -> None:
    for algo in (dict(algorithm="local-sgd", period=3), dict(algorithm="catalyst", theta=0.5, regularizer="none")):
        tr = simulate(**{**dict(model="cnn", dataset=f"cifar10:{cifar}", gamma=0.05, regularizer="none",
                                eval_points=3, eval_samples=32, workers=2, T=64, quiet=True), **algo})
        assert tr.status == "complete" and np.isfinite(tr.evals["loss"]).all()


@pytest.mark.parametrize("args, field", [
    (["--model", "cnn", "--dataset", "synthetic", "--gamma", "0.1"], "dataset"),
    (["--model", "cnn", "--dataset", "cifar10", "--gamma", "0.1"], "dataset"),
    (["--model", "resnet18"], "model"),
    (["--model", "cnn", "--device", "tpu"], "device"),
])
def test_network_refusals(capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> None:
    assert run_cli("--backend", "local", "--workers", "2", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"error: {field}=" in err[0]


def test_a_network_needs_a_step_size(capsys: pytest.CaptureFixture[str], cifar: Path) -> None:
    assert run_cli("--backend", "local", "--workers", "2", "--model", "cnn", "--dataset", f"cifar10:{cifar}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crpsgd_mpi: error: gamma=None: must be given: the problem has no smoothness estimate to derive it "
                   "from"]


def test_a_network_run_resumed_equals_the_run_never_stopped(tmp_path: Path, cifar: Path) -> None:
    """The checkpoint holds the flat parameters, the averaged BatchNorm statistics and every worker's stream."""
    args = ["--backend", "local", "--workers", "2", *net_args(cifar, "--algorithm", "cr-psgd", "--T", "400",
                                                            "--rho", "1.2")]
    assert run_cli(*args, "--out", str(tmp_path / "ref.h5"), "--checkpoint-every", "off") == 0
    out = tmp_path / "t.h5"
    assert run_cli(*args, "--out", str(out), "--checkpoint-every", "3", "--fault", "1:8") == 1
    assert run_cli("--resume", str(out)) == 0
    a, b = read_trace(out), read_trace(tmp_path / "ref.h5")
    assert a.attrs["resumes"][0]["after_round"] == 6
    for c in ("round", "sfo", "batch_size", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in a.evals.columns:
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), c
    assert np.array_equal(a.x, b.x)


def test_a_network_without_gamma_is_refused_before_its_data_is_read(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    """The data folder does not exist: the missing step size is what is said (nothing was read)."""
    for args in (["--dataset", "fashion-mnist", "--fmnist-dir", str(tmp_path / "none")],
                 ["--dataset", f"cifar10:{tmp_path / 'none'}"]):
        assert run_cli("--backend", "local", "--workers", "2", "--model", "cnn", *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error: gamma=None: must be given" in err[0], err
    assert run_cli("--backend", "local", "--workers", "2", "--model", "cnn", "--gamma", "0.1", "--dataset",
                   "fashion-mnist", "--fmnist-dir", str(tmp_path / "none")) == 2  # with gamma: the data is named
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: fmnist_dir=" in err[0] and "make data" in err[0], err


def test_the_test_subset_is_fixed_bounded_and_independent_of_n(cifar: Path) -> None:
    """--test-samples M: the same M test images (seeded, in order) however the workers split them."""
    from crpsgd_mpi.problems import PROBLEMS

    def scored(n_workers: int, **kw: object) -> tuple[np.ndarray, np.ndarray, object]:
        cfg = Config(model="cnn", dataset=f"cifar10:{cifar}", gamma=0.05, T=50, **kw)
        problem = PROBLEMS.build("cnn", Setting(cfg, n_workers))
        parts = problem.shards.test
        return np.concatenate([i for i, _ in parts]), np.concatenate([y for _, y in parts]), problem

    images2, labels2, p2 = scored(2, test_samples=25)
    images3, labels3, p3 = scored(3, test_samples=25)
    assert labels2.size == p2.test_samples == p3.test_samples == 25
    assert np.array_equal(images2, images3) and np.array_equal(labels2, labels3)
    full, full_labels, p_all = scored(3, test_samples=1000)  # more than the set: all 40, in order
    assert p_all.test_samples == 40 and p_all.evaluation_settings()["test_samples"] == 1000
    picked = [int(np.flatnonzero((full == img).all(axis=(1, 2, 3)))[0]) for img in images2]
    assert picked == sorted(set(picked)) and np.array_equal(full_labels[picked], labels2)
    other, _, _ = scored(2, test_samples=25, seed=1)
    assert not np.array_equal(other, images2)  # drawn by the seed root


def test_the_test_samples_are_recorded_and_scored(tmp_path: Path, cifar: Path) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", "3", *net_args(cifar, "--T", "60", "--test-samples", "7"),
                   "--out", str(out)) == 0
    tr = read_trace(out)
    assert tr.config["test_samples"] == 7 and tr.config["eval_points"] == 4 and tr.config["eval_samples"] == 64
    assert set(np.round(tr.evals["test_accuracy"] * 7, 9)) <= set(range(8))  # k correct of 7


def test_the_default_evaluations_of_a_network_plan_at_most_a_quarter_of_its_training(tmp_path: Path,
                                                                                      cifar: Path) -> None:
    """Planned evaluation work (evaluations x samples scored x EVAL_COST) <= 25% of T x N SFO; given values win."""
    T, N = 300, 3
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", "--workers", str(N), "--model", "cnn", "--dataset", f"cifar10:{cifar}",
                   "--gamma", "0.05", "--T", str(T), "--out", str(out)) == 0
    tr = read_trace(out)
    points, e, t = (tr.config[k] for k in ("eval_points", "eval_samples", "test_samples"))
    assert 2 <= points and 1 <= e <= 300 and 1 <= t <= 40
    assert (points + 1) * (e + t) * EVAL_COST <= EVAL_SHARE * T * N
    assert len(tr.evals) <= points + 1
    # explicit values are kept as given; the budget sizes only the rest
    assert run_cli("--backend", "local", "--workers", str(N), "--model", "cnn", "--dataset", f"cifar10:{cifar}",
                   "--gamma", "0.05", "--T", str(T), "--eval-points", "3", "--out", str(out), "--overwrite") == 0
    assert read_trace(out).config["eval_points"] == 3
    # the rule over sizes from a tiny run to a long one (Fashion-MNIST's 60000 + 10000 images)
    for T in (12, 50, 200, 3750, 15000, 10**5, 10**7):
        for N in (1, 2, 8, 10, 64):
            b = evaluation_budget(T, N, 60000, 10000)
            assert b.work(60000, 10000) <= EVAL_SHARE * T * N, (T, N, b)
            assert 2 <= b.eval_points <= 40 and b.eval_samples % N == 0 and b.test_samples <= 10000
    assert evaluation_budget(10**7, 10, 60000, 10000) == EvalBudget(40, 10000, 10000)  # a long run: the defaults
    b = evaluation_budget(15000, 8, 60000, 10000, eval_points=8, eval_samples=5000)
    assert (b.eval_points, b.eval_samples) == (8, 5000) and b.work(60000, 10000) <= EVAL_SHARE * 15000 * 8


def test_logistic_regression_keeps_its_evaluation_defaults() -> None:
    tr = simulate(samples=500, features=3, T=100, workers=2, quiet=True)
    assert tr.config["eval_points"] == 40 and tr.config["eval_samples"] is None and tr.config["test_samples"] is None


def test_a_network_trace_of_before_the_budget_resumes_as_it_evaluated(tmp_path: Path) -> None:
    """A trace whose configuration has no test_samples (written before): 10000 training samples, the whole test
    set, as that run evaluated."""
    from crpsgd_mpi.resume_point import ResumePoint, resumed_config

    options = {k: v for k, v in Config(model="cnn", gamma=0.1, eval_points=40).to_dict().items()
               if k != "test_samples"}
    point = ResumePoint(tmp_path / "old.h5", "running", options, 2, None, None, None, 0, None, [])
    cfg = resumed_config(point, {})
    assert cfg.eval_samples == 10_000 and cfg.test_samples >= 10**9 and cfg.eval_points == 40


def test_an_image_data_set_is_asked_of_the_registry(cifar: Path, capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    """A network takes the image form any registered data set answers (a plug-in's too); CIFAR-10 under logistic
    regression, or a data set with no image form under a network, is one line naming it."""
    from crpsgd_mpi.data.images import Cifar10Images
    from crpsgd_mpi.registry import DATASETS

    DATASETS.register("my-images", lambda setting: DATASETS.build("synthetic", setting),
                      answers={"images": lambda setting: Cifar10Images(setting.argument)})
    try:
        a, b = tmp_path / "a.h5", tmp_path / "b.h5"
        args = ["--backend", "local", "--workers", "2", *net_args(cifar)[4:], "--T", "40", "--model", "cnn"]
        assert run_cli(*args, "--dataset", f"my-images:{cifar}", "--out", str(a)) == 0
        assert run_cli(*args, "--dataset", f"cifar10:{cifar}", "--out", str(b)) == 0
        assert np.array_equal(read_trace(a).x, read_trace(b).x)
        capsys.readouterr()
        assert run_cli(*args, "--dataset", "synthetic") == 2
        assert "needs an image data set: cifar10 or fashion-mnist or my-images" in capsys.readouterr().err
    finally:
        DATASETS._items.pop("my-images", None)
    assert run_cli("--backend", "local", "--workers", "2", "--dataset", f"cifar10:{cifar}") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is an image data set: use it with a network (--model cnn or resnet20), not --model logreg")
