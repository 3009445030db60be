"""Fresh hostile cases (issue 14), one table per class, each fixed at its mechanism:

1. bad input that raised a traceback: looping or over-long paths, a `plugin` setting of the wrong type, an
   address-space or data-segment limit (ulimit -v / -d), a standard output that cannot take --list/--help/--version;
2. plug-in failure paths: `sys.exit` while importing, an algorithm returning something that is not a point;
3. outputs that would destroy inputs (module plug-ins, HDF5 link targets, the cache's lock), a resume through a
   symbolic link, the clean-up of stale copies, default names of runs started together;
4. the API called from threads;
5. the f* cache in odd places;
6. data whose features are all zero, and every schedule's own bound on its largest batch in the memory plan.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, run_cli
from crpsgd_mpi import RunFailed, limits, simulate
from crpsgd_mpi.config import Config
from crpsgd_mpi.errors import InputError
from crpsgd_mpi.registry import ALGORITHMS
from crpsgd_mpi.schedules import (
    BatchSchedule,
    Constant,
    Geometric,
    Linear,
    NormTest,
    Step,
    _largest_staged,
    exact_ratio,
)
from crpsgd_mpi.trace import _HOST, TraceWriter, read_trace

RUN = [sys.executable, "-m", "crpsgd_mpi.run"]
SMALL = ["--backend", "local", "--workers", "2", "--samples", "300", "--features", "4", "--eval-points", "5",
         "--T", "100"]


def cli(args: list[str], cwd: Path, timeout: float = 90, env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess:
    """The command line in a process of its own, in `cwd`, with its own f* cache."""
    full = {**os.environ, "CRPSGD_CACHE": str(cwd / "cache"), "PYTHONPATH": f"{REPO}{os.pathsep}{cwd}", **(env or {})}
    return subprocess.run([*RUN, *args], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout,
                          env=full, preexec_fn=preexec)


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def no_trace_left(where: Path) -> None:
    """Nothing half-written left looking complete: no trace, no temporary copy."""
    leftovers = [p for p in where.rglob("*") if p.name.endswith((".creating", ".writing", ".partial"))]
    assert not leftovers, leftovers


def refused_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> str:
    """The CLI in this process: one line naming `field`, exit 2, no traceback, no trace."""
    out = tmp_path / "out" / "t.h5"
    capsys.readouterr()
    full = [*SMALL, *args]
    if "--out" not in args:
        full += ["--out", str(out)]
    code = run_cli(*full)
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert code == 2, captured.err
    assert line.startswith(f"crpsgd_mpi: error: {field}="), line
    assert "Traceback" not in captured.out
    assert not out.exists()
    no_trace_left(tmp_path)
    return line


# ---- class 1: tracebacks for bad input ------------------------------------------------------------------------

LONG_NAME = "n" * 300  # one component beyond NAME_MAX (255)


def _loop(d: Path) -> Path:
    (d / "loop").symlink_to(d / "loop")
    return d / "loop"


def _pair_loop(d: Path, name: str = "a") -> Path:
    (d / name).symlink_to(d / ("b-" + name))
    (d / ("b-" + name)).symlink_to(d / name)
    return d / name


def _too_deep(d: Path) -> Path:  # beyond PATH_MAX (4096 bytes)
    return d / ("x/" * 2100) / "t.h5"


#: (args built in a folder, field)
PATH_CASES = [
    pytest.param(lambda d: ["--out", str(_loop(d))], "out", id="out-self-loop"),
    pytest.param(lambda d: ["--out", str(_loop(d) / "t.h5")], "out", id="out-loop-in-its-folder"),
    pytest.param(lambda d: ["--out", str(_pair_loop(d))], "out", id="out-two-link-loop"),
    pytest.param(lambda d: ["--out", str(d / (LONG_NAME + ".h5"))], "out", id="out-name-300-bytes"),
    pytest.param(lambda d: ["--out", str(_too_deep(d))], "out", id="out-path-beyond-4096"),
    pytest.param(lambda d: ["--dataset", str(_loop(d))], "dataset", id="dataset-self-loop"),
    pytest.param(lambda d: ["--dataset", str(_pair_loop(d, "x.h5"))], "dataset", id="dataset-h5-two-link-loop"),
    pytest.param(lambda d: ["--dataset", str(_loop(d) / "x.h5")], "dataset", id="dataset-loop-in-its-folder"),
    pytest.param(lambda d: ["--dataset", str(d / LONG_NAME)], "dataset", id="dataset-name-300-bytes"),
    pytest.param(lambda d: ["--dataset", str(d / (LONG_NAME + ".h5"))], "dataset", id="dataset-h5-name-300-bytes"),
    pytest.param(lambda d: ["--dataset", str(_too_deep(d))], "dataset", id="dataset-path-beyond-4096"),
    pytest.param(lambda d: ["--dataset", "fashion-mnist", "--fmnist-dir", str(_pair_loop(d))], "fmnist_dir",
                 id="fmnist-dir-loop"),
    pytest.param(lambda d: ["--dataset", "fashion-mnist", "--fmnist-dir", str(d / LONG_NAME)], "fmnist_dir",
                 id="fmnist-dir-name-300-bytes"),
    pytest.param(lambda d: ["--dataset", "fashion-mnist", "--fmnist-dir", str(_too_deep(d))], "fmnist_dir",
                 id="fmnist-dir-path-beyond-4096"),
    pytest.param(lambda d: ["--dataset", f"fashion-mnist:{_loop(d)}"], "dataset", id="fashion-mnist-arg-loop"),
    pytest.param(lambda d: ["--plugin", str(_pair_loop(d))], "plugin", id="plugin-loop"),
    pytest.param(lambda d: ["--plugin", str(_pair_loop(d, "p.py"))], "plugin", id="plugin-py-loop"),
    pytest.param(lambda d: ["--plugin", str(d / (LONG_NAME + ".py"))], "plugin", id="plugin-name-300-bytes"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("build, field", PATH_CASES)
def test_paths_no_system_call_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    build: Callable[[Path], list[str]], field: str) -> None:
    d = tmp_path / "in"
    d.mkdir()
    line = refused_in_process(tmp_path, capsys, build(d), field)
    assert any(w in line for w in ("loop", "bytes")), line


#: `plugin` in a TOML file: anything but a string or a list of non-empty strings.
PLUGIN_TOML_CASES = [
    pytest.param("plugin = 5\n", id="int"),
    pytest.param("plugin = {a = 1}\n", id="table"),
    pytest.param("plugin = [1, 2]\n", id="list-of-ints"),
    pytest.param("plugin = true\n", id="bool"),
    pytest.param('plugin = [""]\n', id="list-with-empty-string"),
    pytest.param('plugin = ["x", ["y"]]\n', id="nested-list"),
    pytest.param("plugin = 1979-05-27\n", id="date"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", PLUGIN_TOML_CASES)
def test_plugin_setting_of_the_wrong_type(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    assert "string" in refused_in_process(tmp_path, capsys, ["--config", str(p)], "plugin")


def _limit(which: int, nbytes: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(which, (nbytes, resource.RLIM_INFINITY))
    return apply


#: (the limit, the ulimit flag the line names): a run planned at ~1.7 GB under a 1 GB limit of the process.
RLIMIT_CASES = [
    pytest.param(resource.RLIMIT_AS, "ulimit -v", id="address-space"),
    pytest.param(resource.RLIMIT_DATA, "ulimit -d", id="data-segment"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which, flag", RLIMIT_CASES)
def test_memory_plan_sees_the_process_limits(tmp_path: Path, which: int, flag: str) -> None:
    res = cli([*SMALL, "--samples", "2000000", "--features", "50", "--out", str(tmp_path / "t.h5")], tmp_path,
              preexec=_limit(which, 10**9))
    line = one_line(res.stderr)
    assert res.returncode == 2 and line.startswith("crpsgd_mpi: error: samples=2000000: ") and flag in line, line
    assert not (tmp_path / "t.h5").exists()
    small = cli([*SMALL, "--out", str(tmp_path / "u.h5"), "--quiet"], tmp_path, preexec=_limit(which, 10**9))
    assert small.returncode == 0, small.stderr  # a run that fits still runs under the limit


@pytest.mark.timeout(10)
def test_process_limits_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    real = resource.getrlimit
    cap = (limits._status_bytes("VmSize") or 0) + 10**9  # 1 GB above what this process already maps
    monkeypatch.setattr(resource, "getrlimit", lambda r: (cap, -1) if r == resource.RLIMIT_AS else real(r))
    left, who = limits.process_memory_left()  # type: ignore[misc]
    assert 0 < left <= 10**9 and "ulimit -v" in who
    limits.require([limits.Need("samples", 1, 1e6, "x")])
    with pytest.raises(InputError, match="in each process.*ulimit -v"):
        limits.require([limits.Need("samples", 1, 0.9e9, "the data")])


#: what asks for standard output, and how standard output fails
STDOUT_CASES = [
    pytest.param(["--list"], "full", id="list-dev-full"),
    pytest.param(["--help"], "full", id="help-dev-full"),
    pytest.param(["--version"], "full", id="version-dev-full"),
    pytest.param(["--list"], "closed", id="list-closed"),
    pytest.param(["--help"], "closed", id="help-closed"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, how", STDOUT_CASES)
def test_a_standard_output_that_cannot_take_it(tmp_path: Path, args: list[str], how: str) -> None:
    if how == "full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    if how == "full":
        with open("/dev/full", "w") as full:
            res = cli(args, tmp_path, stdout=full)
    else:
        res = cli(args, tmp_path, stdout=None, preexec=lambda: os.close(1))
    line = one_line(res.stderr)
    assert res.returncode == 2 and line.startswith("crpsgd_mpi: error: stdout="), line


# ---- class 2: plug-in failure paths ---------------------------------------------------------------------------

SYS_EXIT_CASES = [
    pytest.param("import sys\nsys.exit(0)\n", "sys.exit(0)", id="exit-0"),
    pytest.param("import sys\nsys.exit(7)\n", "sys.exit(7)", id="exit-7"),
    pytest.param("import sys\nsys.exit('bye')\n", "sys.exit('bye')", id="exit-message"),
    pytest.param("raise SystemExit\n", "sys.exit(None)", id="raise-SystemExit"),
    pytest.param("def f():\n    exit(3)\nf()\n", "sys.exit(3)", id="builtin-exit-in-a-function"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text, said", SYS_EXIT_CASES)
def test_plugin_that_exits_while_importing(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                           said: str) -> None:
    plug = tmp_path / "quits.py"
    plug.write_text(text)
    line = refused_in_process(tmp_path, capsys, ["--plugin", str(plug)], "plugin")
    assert repr(str(plug)) in line and said in line


@pytest.mark.timeout(60)
def test_module_plugin_that_exits_while_importing(tmp_path: Path) -> None:
    (tmp_path / "quitmod.py").write_text("import sys\nsys.exit(5)\n")
    res = cli([*SMALL, "--plugin", "quitmod", "--out", str(tmp_path / "t.h5")], tmp_path)
    line = one_line(res.stderr)
    assert res.returncode == 2 and line.startswith("crpsgd_mpi: error: plugin='quitmod': called sys.exit(5)"), line


#: what a plug-in algorithm's run() returns -> (status, exit code, words of the line)
BAD_POINTS = [
    pytest.param("None", "failed", 1, "returned NoneType", id="none"),
    pytest.param("x * np.nan", "diverged", 3, "not finite", id="nan"),
    pytest.param("np.where(np.arange(x.size) == 1, np.inf, x)", "diverged", 3, "not finite", id="one-inf"),
    pytest.param("x[:-1]", "failed", 1, "shape", id="one-short"),
    pytest.param("np.stack([x, x])", "failed", 1, "shape", id="two-dimensional"),
    pytest.param("x.tolist()", "failed", 1, "returned list", id="a-list"),
    pytest.param("float(x[0])", "failed", 1, "returned float", id="a-number"),
    pytest.param("x.astype(np.int64)", "failed", 1, "dtype int64", id="integers"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("expr, status, code, words", BAD_POINTS)
def test_algorithm_returning_a_bad_point(tmp_path: Path, expr: str, status: str, code: int, words: str) -> None:
    plug = tmp_path / "badpoint.py"
    plug.write_text(textwrap.dedent(f'''
        """PSGD that returns something else than its point."""
        import numpy as np
        from crpsgd_mpi import ALGORITHMS
        psgd = ALGORITHMS.get("psgd")

        class BadPoint(psgd):
            """PSGD returning a bad point."""
            def run(self, workers, x0):
                x = super().run(workers, x0)
                return {expr}

        ALGORITHMS.register("bad-point", BadPoint)
    '''))
    out = tmp_path / "t.h5"
    res = cli([*SMALL, "--plugin", str(plug), "--algorithm", "bad-point", "--out", str(out)], tmp_path)
    line = one_line(res.stderr)
    assert res.returncode == code and line.startswith(f"crpsgd_mpi: {status}: "), line
    assert "'bad-point'" in line and words in line, line
    tr = read_trace(out)
    assert tr.status == status and tr.x is None and words in tr.attrs["message"]


# ---- class 3: outputs never destroy inputs; a finished run's file is never lost -------------------------------


def _module_plugin(d: Path) -> tuple[list[str], Path]:
    pkg = d / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plug.py").write_text('"""A plug-in by module name."""\nfrom mypkg import helper  # noqa\n')
    (pkg / "helper.py").write_text("X = 1\n")
    return ["--plugin", "mypkg.plug"], pkg / "plug.py"


def _module_plugin_helper(d: Path) -> tuple[list[str], Path]:
    args, _ = _module_plugin(d)
    return args, d / "mypkg" / "helper.py"


def _module_plugin_package(d: Path) -> tuple[list[str], Path]:
    args, _ = _module_plugin(d)
    return args, d / "mypkg" / "__init__.py"


def _external_link(d: Path) -> tuple[list[str], Path]:
    rng = np.random.default_rng(0)
    with h5py.File(d / "target.h5", "w") as f:
        f["X"], f["y"] = rng.random((60, 3)), np.where(rng.random(60) > 0.5, 1.0, -1.0)
    with h5py.File(d / "main.h5", "w") as f:
        f["X"] = h5py.ExternalLink("target.h5", "/X")
        f["y"] = h5py.ExternalLink("target.h5", "/y")
    return ["--dataset", str(d / "main.h5")], d / "target.h5"


def _external_link_by_symlink(d: Path) -> tuple[list[str], Path]:
    args, target = _external_link(d)
    (d / "alias.h5").symlink_to(target)
    return args, d / "alias.h5"


def _virtual_source(d: Path) -> tuple[list[str], Path]:
    rng = np.random.default_rng(1)
    with h5py.File(d / "rows.h5", "w") as f:
        f["X"] = rng.random((60, 3))
    with h5py.File(d / "main.h5", "w") as f:
        layout = h5py.VirtualLayout(shape=(60, 3), dtype="f8")
        layout[:] = h5py.VirtualSource("rows.h5", "X", shape=(60, 3))
        f.create_virtual_dataset("X", layout)
        f["y"] = np.where(rng.random(60) > 0.5, 1.0, -1.0)
    return ["--dataset", str(d / "main.h5")], d / "rows.h5"


def _cache_lock(d: Path) -> tuple[list[str], Path]:
    return [], d / "cache" / "fstar.json.lock"


#: (builder -> (args, the file an --out would destroy))
DESTROY_CASES = [
    pytest.param(_module_plugin, id="plugin-by-module-name"),
    pytest.param(_module_plugin_helper, id="module-the-plugin-imports"),
    pytest.param(_module_plugin_package, id="plugin-package-init"),
    pytest.param(_external_link, id="hdf5-external-link-target"),
    pytest.param(_external_link_by_symlink, id="hdf5-external-link-target-by-symlink"),
    pytest.param(_virtual_source, id="hdf5-virtual-dataset-source"),
    pytest.param(_cache_lock, id="fstar-cache-lock"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("build", DESTROY_CASES)
def test_output_never_destroys_an_input(tmp_path: Path, build: Callable[[Path], tuple[list[str], Path]]) -> None:
    args, victim = build(tmp_path)
    before = victim.read_bytes() if victim.exists() else None
    res = cli([*SMALL, *args, "--out", str(victim), "--overwrite"], tmp_path)
    line = one_line(res.stderr)
    assert res.returncode == 2 and line.startswith("crpsgd_mpi: error: out=") and "which this run reads" in line
    assert (victim.read_bytes() if victim.exists() else None) == before
    no_trace_left(tmp_path)


@pytest.mark.timeout(120)
def test_resume_through_a_symbolic_link_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    trace = tmp_path / "real" / "t.h5"
    first = cli([*SMALL, "--algorithm", "psgd", "--T", "400", "--fault", "1:5", "--checkpoint-every", "1", "--out",
                 str(trace), "--quiet"], tmp_path)
    assert first.returncode == 1 and read_trace(trace).status == "failed"
    link = tmp_path / "link.h5"
    link.symlink_to(trace)
    res = cli(["--resume", str(link), "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == str(trace)
    tr = read_trace(trace)
    assert tr.status == "complete" and len(tr.rounds) == 400
    no_trace_left(tmp_path)


@pytest.mark.timeout(60)
def test_a_long_trace_name_still_has_room_for_its_temporary_copies(tmp_path: Path) -> None:
    out = tmp_path / ("t" * 230 + ".h5")  # the copies' names carry host and pid: the long name is shortened there
    assert run_cli(*SMALL, "--out", str(out)) == 0 and read_trace(out).status == "complete"
    no_trace_left(tmp_path)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.timeout(60)
def test_stale_copies_removed_only_when_their_writer_is_dead(tmp_path: Path) -> None:
    trace = tmp_path / "t.h5"
    TraceWriter(trace, {"algorithm": "x"}).finish("failed", None, {})
    dead = _dead_pid()
    live = subprocess.Popen(["sleep", "30"])
    try:
        names = {
            "dead": f".t.h5.{_HOST}.{dead}.abcd1234.writing",
            "dead-creating": f".t.h5.{_HOST}.{dead}.abcd1235.creating",
            "live": f".t.h5.{_HOST}.{live.pid}.abcd1234.writing",  # another run, alive, in the middle of a write
            "other-host": f".t.h5.elsewhere-host.{dead}.abcd1234.writing",
            "other-trace": f".t.h5.b.h5.{_HOST}.{dead}.abcd1234.writing",  # a copy of t.h5.b.h5, not of t.h5
            "legacy": ".t.h5.abcd1234.writing",  # no owner recorded: not provably dead
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"copy")
        TraceWriter.reopen(trace)
        left = {k for k, name in names.items() if (tmp_path / name).exists()}
        assert left == {"live", "other-host", "other-trace", "legacy"}
    finally:
        live.kill()
        live.wait()


@pytest.mark.timeout(180)
def test_runs_started_together_with_the_default_out_never_collide(tmp_path: Path) -> None:
    env = {**os.environ, "CRPSGD_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([*RUN, *SMALL, "--quiet"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(p.wait(timeout=150), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    made = sorted((tmp_path / "runs").glob("*.h5"))
    assert len(made) == 3 and all(read_trace(p).status == "complete" for p in made)


# ---- class 4: the API from threads ----------------------------------------------------------------------------

#: dense data large enough for the blocked BLAS kernel (its scratch buffers are per process) and d > 16 (Lanczos)
THREADED = dict(samples=8000, features=40, T=400, workers=2, eval_points=5, quiet=True)


@pytest.mark.timeout(240)
def test_simulate_from_threads_equals_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    alone = simulate(**THREADED)
    got: list[object] = [None] * 3

    def go(i: int) -> None:
        got[i] = simulate(**THREADED)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tr in got:
        assert tr.config["L"] == alone.config["L"] and tr.config["L_converged"]  # type: ignore[union-attr]
        assert np.array_equal(tr.evals["loss"], alone.evals["loss"]) and np.array_equal(tr.x, alone.x)  # type: ignore


@pytest.mark.timeout(120)
def test_simulate_from_threads_runs_one_at_a_time() -> None:
    spans: list[tuple[float, float]] = []
    psgd = ALGORITHMS.get("psgd")

    class Slow(psgd):  # type: ignore[misc, valid-type]
        """PSGD that records when it runs."""

        def run(self, workers: object, x0: np.ndarray) -> np.ndarray:
            start = time.monotonic()
            time.sleep(0.3)
            x = super().run(workers, x0)
            spans.append((start, time.monotonic()))
            return x

    ALGORITHMS.register("test-slow", Slow, replace=True)
    threads = [threading.Thread(target=simulate, kwargs=dict(algorithm="test-slow", samples=500, features=3, T=50,
                                                              workers=2, eval_points=3, quiet=True)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.timeout(120)
def test_simulate_from_inside_a_run_is_refused() -> None:
    psgd = ALGORITHMS.get("psgd")

    class Nested(psgd):  # type: ignore[misc, valid-type]
        """PSGD that starts another simulation from its run."""

        def run(self, workers: object, x0: np.ndarray) -> np.ndarray:
            simulate(samples=200, features=3, T=20, workers=2, quiet=True)
            return super().run(workers, x0)

    ALGORITHMS.register("test-nested", Nested, replace=True)
    with pytest.raises(RunFailed, match="called from inside a run"):
        simulate(algorithm="test-nested", samples=200, features=3, T=20, workers=2, quiet=True)
    assert simulate(samples=200, features=3, T=20, workers=2, quiet=True).status == "complete"  # the lock was freed


# ---- class 5: the f* cache is only a cache --------------------------------------------------------------------


def _cache_is_a_file(d: Path) -> Path:
    (d / "cachefile").write_text("x")
    return d / "cachefile"


def _fifo_lock(d: Path) -> Path:
    (d / "c").mkdir()
    os.mkfifo(d / "c" / "fstar.json.lock")
    return d / "c"


def _folder_lock(d: Path) -> Path:
    (d / "c").mkdir()
    (d / "c" / "fstar.json.lock").mkdir()
    return d / "c"


def _lock_to_a_device(d: Path) -> Path:
    (d / "c").mkdir()
    (d / "c" / "fstar.json.lock").symlink_to("/dev/null")
    return d / "c"


def _name_too_long(d: Path) -> Path:
    return d / LONG_NAME


#: CRPSGD_CACHE built in a folder
CACHE_CASES = [
    pytest.param(_cache_is_a_file, id="cache-names-a-regular-file"),
    pytest.param(_fifo_lock, id="fifo-at-the-lock"),
    pytest.param(_folder_lock, id="folder-at-the-lock"),
    pytest.param(_lock_to_a_device, id="lock-links-to-a-device"),
    pytest.param(_name_too_long, id="cache-name-300-bytes"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("build", CACHE_CASES)
def test_a_cache_that_cannot_be_used_never_fails_or_hangs(tmp_path: Path, build: Callable[[Path], Path]) -> None:
    cache = build(tmp_path)
    start = time.monotonic()
    res = cli([*SMALL, "--out", str(tmp_path / "t.h5"), "--quiet"], tmp_path, env={"CRPSGD_CACHE": str(cache)},
              timeout=50)
    assert res.returncode == 0 and read_trace(tmp_path / "t.h5").status == "complete", res.stderr
    notes = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(notes) == 1 and notes[0].startswith("crpsgd_mpi: note: the f* cache "), notes
    assert time.monotonic() - start < 40


# ---- class 6: data with all-zero features; every schedule's own largest batch ---------------------------------


def _zero_h5(d: Path) -> Path:
    with h5py.File(d / "zero.h5", "w") as f:
        f["X"], f["y"] = np.zeros((40, 5)), np.where(np.arange(40) % 2, 1.0, -1.0)
    return d / "zero.h5"


def _zero_h5_unwritten(d: Path) -> Path:
    with h5py.File(d / "zero.h5", "w") as f:  # no chunk ever written: all fill value
        f.create_dataset("X", shape=(40, 5), dtype="f8", chunks=(8, 5))
        f["y"] = np.where(np.arange(40) % 2, 1.0, -1.0)
    return d / "zero.h5"


def _zero_svm_explicit(d: Path) -> Path:
    (d / "zero.svm").write_text("".join(f"{1 if i % 2 else -1} 1:0 3:0.0\n" for i in range(40)))
    return d / "zero.svm"


def _zero_svm_no_features(d: Path) -> Path:
    (d / "zero.svm").write_text("".join(f"{1 if i % 2 else -1}\n" for i in range(40)))
    return d / "zero.svm"


#: (builder, extra args)
ZERO_CASES = [
    pytest.param(_zero_h5, [], id="hdf5"),
    pytest.param(_zero_h5, ["--no-intercept", "--regularizer", "none"], id="hdf5-L-zero"),
    pytest.param(_zero_h5_unwritten, [], id="hdf5-never-written"),
    pytest.param(_zero_svm_explicit, ["--no-intercept", "--regularizer", "none"], id="libsvm-explicit-zeros-L-zero"),
    pytest.param(_zero_svm_no_features, [], id="libsvm-no-features"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("build, extra", ZERO_CASES)
def test_all_zero_features_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       build: Callable[[Path], Path], extra: list[str]) -> None:
    data = build(tmp_path)
    line = refused_in_process(tmp_path, capsys, ["--dataset", str(data), *extra], "dataset")
    assert repr(str(data)) in line and "all zero" in line


@pytest.mark.timeout(60)
def test_one_zero_row_or_column_is_fine(tmp_path: Path) -> None:
    X = np.random.default_rng(0).random((40, 5))
    X[:, 2] = 0.0
    X[:39] = 0.0  # only the last row holds anything
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"], f["y"] = X, np.where(np.arange(40) % 2, 1.0, -1.0)
    assert run_cli(*SMALL, "--dataset", str(tmp_path / "d.h5"), "--out", str(tmp_path / "t.h5")) == 0


#: every built-in schedule, and a plug-in's with only batch()
class _Doubling(BatchSchedule):
    def batch(self, t: int) -> int:
        return 3 * 2 ** (t - 1)

    def describe(self) -> str:
        return "doubling"


SCHEDULES_UNDER_TEST = [
    pytest.param(lambda: Step(1, 10, 1), id="step-1-10-1"),
    pytest.param(lambda: Step(3, 2, 7), id="step-3-2-7"),
    pytest.param(lambda: Step(2, 1.3, 4), id="step-2-1.3-4"),
    pytest.param(lambda: Step(1, 1.001, 3), id="step-1-1.001-3"),
    pytest.param(lambda: Geometric(1, 1.1), id="geometric-1-1.1"),
    pytest.param(lambda: Geometric(5, 3.0), id="geometric-5-3"),
    pytest.param(lambda: Linear(4), id="linear-4"),
    pytest.param(lambda: Constant(9), id="constant-9"),
    pytest.param(lambda: _Doubling(), id="plugin-doubling"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", SCHEDULES_UNDER_TEST)
def test_each_schedule_bounds_its_largest_batch(make: Callable[[], BatchSchedule]) -> None:
    schedule = make()
    for T in (1, 5, 77, 1000, 10**4, 123_457):
        batches = list(schedule.within(T))
        bound = schedule.largest_batch(T)
        assert not batches or max(batches) == bound, (T, max(batches), bound)  # few stages: exact


@pytest.mark.timeout(60)
@pytest.mark.parametrize("B1, factor, every", [(1, 1.001, 1), (1, 1.001, 5), (3, 1.01, 2), (1, 1.5, 3), (7, 2, 10)])
def test_staged_closed_form_bounds_the_walk(monkeypatch: pytest.MonkeyPatch, B1: int, factor: float,
                                            every: int) -> None:
    import crpsgd_mpi.schedules as schedules

    r = exact_ratio(factor)
    for T in (B1, 50, 999, 20_000, 300_000):
        exact = _largest_staged(B1, r, every, T)
        monkeypatch.setattr(schedules, "EXACT_STAGES", -1)  # the closed form only
        bound = _largest_staged(B1, r, every, T)
        monkeypatch.undo()
        assert exact <= bound <= max(T, B1), (T, exact, bound)
        assert exact == max(Step(B1, factor, every).within(T), default=B1)


@pytest.mark.timeout(30)
def test_the_memory_plan_uses_the_schedules_own_bound() -> None:
    cfg = Config(schedule="step", B1=1, step_factor=10, step_every=1, T=10**6)
    assert ALGORITHMS.get(cfg.algorithm).largest_batch(cfg, 10) == (100_000, "T")  # the geometric bound planned 84280
    assert max(Step(1, 10, 1).within(10**6)) == 100_000
    assert ALGORITHMS.get("cr-psgd").largest_batch(Config(schedule="norm-test", T=5000), 10) == (5000, "T")
    assert NormTest(1, 0.5).largest_batch(5000) == 5000
    assert ALGORITHMS.get("cr-psgd").largest_batch(Config(schedule="linear", B1=2, T=1000), 10) == (2 * 31, "T")


def test_case_counts() -> None:
    """The tables' sizes, as reported per class."""
    counts = {
        1: len(PATH_CASES) + len(PLUGIN_TOML_CASES) + len(RLIMIT_CASES) + len(STDOUT_CASES),
        2: len(SYS_EXIT_CASES) + 1 + len(BAD_POINTS),
        3: len(DESTROY_CASES) + 4,
        4: 3,
        5: len(CACHE_CASES),
        6: len(ZERO_CASES) + len(SCHEDULES_UNDER_TEST) + 5 + 1,
    }
    assert counts == {1: 32, 2: 14, 3: 11, 4: 3, 5: 5, 6: 20}, counts
