"""The parallel driver: the traces of a pool of processes are those of the runs one after another; every f* is
computed once, by the run that computes it in turn; concurrent cache writers lose nothing."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from crpsgd_mpi.experiment import FstarOrder, Run, fstar_key, load_family, run_families
from crpsgd_mpi.fstar_cache import cache_path, read_table, store
from crpsgd_mpi.trace import read_trace

FAMILIES = {
    "fam": 'study = "pl"\nseeds = [0, 1]\n[base]\nsamples = 2000\nfeatures = 5\nT = 300\neval_points = 4\nworkers = 3\n'
           '[runs.cr-psgd]\nalgorithm = "cr-psgd"\nrho = 1.5\n[runs.psgd-b4]\nalgorithm = "psgd"\nbatch_size = 4\n'
           '[runs.nc]\nalgorithm = "psgd"\nregularizer = "nonconvex"\nlam = 0.01\n',
    "other": 'study = "speedup"\nseeds = [0]\n[base]\nsamples = 3000\nfeatures = 7\nT = 200\neval_points = 4\n'
             '[sweep]\nworkers = [1, 2]\n[runs.cr-psgd]\nalgorithm = "cr-psgd"\nrho = 1.5\n',
}


def families(tmp_path: Path) -> list[Path]:
    paths = []
    for name, text in FAMILIES.items():
        paths.append(tmp_path / f"{name}.toml")
        paths[-1].write_text(text)
    return paths


def same_trace(a: Path, b: Path) -> bool:
    ta, tb = read_trace(a), read_trace(b)
    cols = ("round", "sfo", "batch_size", "stage", "bytes")
    return (ta.status == tb.status == "complete" and all(np.array_equal(ta.rounds[c], tb.rounds[c]) for c in cols)
            and all(np.array_equal(ta.evals[c], tb.evals[c], equal_nan=True) for c in ta.evals)
            and np.array_equal(ta.x, tb.x) and ta.attrs.get("f_star") == tb.attrs.get("f_star"))


@pytest.mark.timeout(240)
def test_pool_traces_equal_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = families(tmp_path)
    monkeypatch.setenv("CRPSGD_CACHE", str(tmp_path / "cache-seq"))
    assert run_families(paths, tmp_path / "seq", verbose=False) == 0
    monkeypatch.setenv("CRPSGD_CACHE", str(tmp_path / "cache-pool"))
    assert run_families(paths, tmp_path / "pool", verbose=False, jobs=2) == 0
    runs = [r for p in paths for r in load_family(p).expand(tmp_path / "seq")]
    assert len(runs) == 8
    for run in runs:
        assert same_trace(run.path, tmp_path / "pool" / run.path.relative_to(tmp_path / "seq")), run.path
    assert read_table(tmp_path / "cache-pool" / "fstar.json") == read_table(tmp_path / "cache-seq" / "fstar.json")


def test_each_fstar_is_computed_by_the_first_run_needing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRPSGD_CACHE", str(tmp_path / "cache"))
    runs = [r for p in families(tmp_path) for r in load_family(p).expand(tmp_path / "r")]
    keys = [fstar_key(r) for r in runs]
    # nonconvex runs need no f*; f* is one per partition of the data (seed and N), shared by the runs on it
    assert keys.count(None) == 2 and len({k for k in keys if k}) == 4
    order = FstarOrder(runs)
    first = list(order.startable(8))
    # every run without f* starts, and for each f* only its first run
    assert [(r.family, r.label, r.seed) for r in first] == [
        ("fam", "cr-psgd", 0), ("fam", "cr-psgd", 1), ("fam", "nc", 0), ("fam", "nc", 1), ("other", "cr-psgd-N1", 0),
        ("other", "cr-psgd-N2", 0)]
    assert list(order.startable(8)) == []
    store(cache_path(), keys[0], 0.5)  # what the first run writes
    order.finished(first[0])
    assert [(r.label, r.seed) for r in order.startable(8)] == [("psgd-b4", 0)]
    order.finished(first[1])  # failed: wrote nothing, so the next run needing that f* computes it alone
    assert [(r.label, r.seed) for r in order.startable(8)] == [("psgd-b4", 1)]
    assert not order.pending


def _store_many(path: str, start: int) -> None:
    for i in range(start, start + 40):
        store(Path(path), f"key{i}", float(i))


def test_concurrent_cache_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fstar.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_store_many, args=(str(path), 40 * i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    table = json.loads(path.read_text())
    assert table == {f"key{i}": float(i) for i in range(160)}


def test_run_is_picklable() -> None:
    import pickle

    run = Run("f", "l", 0, {"T": 10}, Path("x.h5"))
    assert pickle.loads(pickle.dumps(run)) == run


@pytest.mark.timeout(240)
def test_a_stopped_member_is_resumed_and_a_changed_one_run_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from crpsgd_mpi.experiment import resumable
    from crpsgd_mpi.run import main

    monkeypatch.setenv("CRPSGD_CACHE", str(tmp_path / "cache"))
    fam = tmp_path / "fam.toml"
    fam.write_text('study = "pl"\nseeds = [0]\n[base]\nsamples = 2000\nfeatures = 5\nT = 3000\neval_points = 4\n'
                   'workers = 3\n[runs.psgd]\nalgorithm = "psgd"\nbatch_size = 2\n')
    assert run_families([fam], tmp_path / "ref", verbose=False) == 0
    (run,) = load_family(fam).expand(tmp_path / "res")
    options = [f"--{k.replace('_', '-')}={v}" for k, v in run.settings.items()]
    run.path.parent.mkdir(parents=True)
    assert main([*options, "--out", str(run.path), "--quiet", "--checkpoint-every", "50", "--fault", "1:120"]) == 1
    assert resumable(run)
    assert run_families([fam], tmp_path / "res", verbose=False) == 0
    assert read_trace(run.path).attrs["resumes"][0]["after_round"] == 100
    assert same_trace(run.path, tmp_path / "ref" / run.path.relative_to(tmp_path / "res"))
    # the family changed since: the stopped trace is not its run any more, and it is run again from the start
    assert main([*options, "--out", str(run.path), "--overwrite", "--quiet", "--checkpoint-every", "50",
                 "--fault", "1:120"]) == 1
    fam.write_text(fam.read_text().replace("batch_size = 2", "batch_size = 3"))
    (changed,) = load_family(fam).expand(tmp_path / "res")
    assert changed.path == run.path and not resumable(changed)
    assert run_families([fam], tmp_path / "res", verbose=False) == 0
    assert "resumes" not in read_trace(run.path).attrs and read_trace(run.path).status == "complete"
