"""Networks as problems (the [torch] extra): exact counts of CR-PSGD on a network, float32 payloads with BatchNorm's
averaged statistics, in-process vs mpiexec bit for bit, CIFAR-10 files end to end, the refusals a network needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cifar_files import write_cifar10  # noqa: E402

from conftest import mpi_run, run_cli  # noqa: E402
from crpsgd_mpi import simulate  # noqa: E402
from crpsgd_mpi.problems.nets import cnn  # noqa: E402
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
    from crpsgd_mpi.algorithms import PSGD, Setting
    from crpsgd_mpi.comm import LocalBackend
    from crpsgd_mpi.config import Config
    from crpsgd_mpi.ledger import Ledger
    from crpsgd_mpi.problems import PROBLEMS
    from crpsgd_mpi.workers import Workers

    cfg = Config(model="cnn", dataset=f"cifar10:{cifar}", gamma=0.05, regularizer="none", T=6, batch_size=2)
    problem = PROBLEMS.get("cnn")(cfg, 3, range(3))
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
    args = net_args(cifar, "--algorithm", "cr-psgd", "--T", "300", "--rho", "1.5")
    res = mpi_run(2, [*args, "--out", str(tmp_path / "mpi.h5"), "--quiet"], timeout=200)
    assert res.returncode == 0 and not res.timed_out
    assert run_cli("--backend", "local", "--workers", "2", *args, "--out", str(tmp_path / "local.h5")) == 0
    a, b = read_trace(tmp_path / "mpi.h5"), read_trace(tmp_path / "local.h5")
    for c in ("round", "sfo", "batch_size", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    for c in a.evals.columns:
        assert np.array_equal(a.evals[c], b.evals[c], equal_nan=True), c
    assert np.array_equal(a.x, b.x)  # one torch thread per process: the same bits (measured; see README)


def test_local_sgd_and_catalyst_run_on_a_network(cifar: Path) -> None:
    for algo in (dict(algorithm="local-sgd", period=3), dict(algorithm="catalyst", theta=0.5, regularizer="none")):
        tr = simulate(**{**dict(model="cnn", dataset=f"cifar10:{cifar}", gamma=0.05, regularizer="none",
                                eval_points=3, eval_samples=32, workers=2, T=64, quiet=True), **algo})
        assert tr.status == "complete" and np.isfinite(tr.evals["loss"]).all()


@pytest.mark.parametrize("args, field", [
    (["--model", "cnn", "--dataset", "synthetic", "--gamma", "0.1"], "dataset"),
    (["--model", "cnn", "--dataset", "cifar10"], "dataset"),
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
