"""A damaged or edited checkpoint is refused before the trace is touched (one line naming the file and what is wrong,
exit status 2, the trace byte for byte as it was), whatever was changed: every dataset and attribute of the checkpoint
zeroed, bit-flipped, truncated, retyped or deleted, every field of its ledger and monitor edited, the trace's header
that its digest seals, the rows it matches; and edits whose digest was recomputed (a forged seal) are still caught by
the value checks. A trace never chooses what code runs: the plug-ins it names are imported only when the user gives
them. `load_trace` of a damaged file raises TraceError naming it, and nothing else.

Case counts (collected): see `python -m pytest --collect-only -q tests/test_checkpoint_integrity.py`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from crpsgd_mpi.checkpoint import digest
from crpsgd_mpi.errors import InputError, TraceError
from crpsgd_mpi.run import main
from crpsgd_mpi.trace import load_trace

RUN = [sys.executable, "-m", "crpsgd_mpi.run"]
SMALL = ["--backend", "local", "--workers", "3", "--samples", "2000", "--features", "5", "--eval-points", "8",
         "--T", "6000"]
#: What the fixture's checkpoint holds (a test checks that this is all of it: a new field gets its cases).
DATASETS = ("checkpoint/rngs", "checkpoint/algorithm/x")
NUMBER_ATTRS = (("checkpoint", "format"), ("checkpoint", "evals"), ("checkpoint", "plan"))
TEXT_ATTRS = (("checkpoint", "ledger"), ("checkpoint", "monitor"), ("checkpoint", "digest"),
              ("checkpoint/algorithm/plan", "given"))
SEALED_TEXT = ("run_config", "config", "algorithm", "data_fingerprint")
SEALED_NUMBERS = ("schema_version", "N", "T", "seed", "f_star")


def cli(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PSGD, N=3, stopped by a failure at round 30 with its checkpoint at round 20."""
    where = tmp_path_factory.mktemp("base")
    out = where / "t.h5"
    res = cli([*SMALL, "--algorithm", "psgd", "--out", str(out), "--quiet", "--checkpoint-every", "10",
               "--fault", "0:30"], where)
    assert res.returncode == 1, res.stderr
    return out


@pytest.fixture
def trace(tmp_path: Path, base: Path) -> Path:
    path = tmp_path / "t.h5"
    shutil.copyfile(base, path)
    return path


def assert_refused(path: Path, capfd: pytest.CaptureFixture[str], says: str = "") -> str:
    """A resume of `path` (in this process) is refused in one line naming it, exit 2, the file untouched."""
    before = sha(path)
    capfd.readouterr()
    code = main(["--resume", str(path)])
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"crpsgd_mpi: error: resume='{path}': "), lines[0]
    assert says in lines[0], lines[0]
    assert sha(path) == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []
    return lines[0]


def seal(f: h5py.File) -> None:
    """Recompute the checkpoint's digest (a forged seal: only the value checks can tell)."""
    f["checkpoint"].attrs["digest"] = np.bytes_(digest(f["checkpoint"]).encode())


# -- how a dataset is spoiled ------------------------------------------------------------------------------------

def _replace(f: h5py.File, path: str, data: Any) -> None:
    del f[path]
    f[path] = data


def _flip(a: np.ndarray, index: int) -> np.ndarray:
    raw = bytearray(np.ascontiguousarray(a).tobytes())
    raw[index] ^= 0x01
    return np.frombuffer(bytes(raw), dtype=a.dtype).reshape(a.shape)


DATASET_SPOILS: dict[str, Callable[[h5py.File, str], None]] = {
    "zeroed": lambda f, p: f[p].__setitem__(Ellipsis, 0),
    "bit-flipped-first-byte": lambda f, p: f[p].__setitem__(Ellipsis, _flip(f[p][()], 0)),
    "bit-flipped-last-byte": lambda f, p: f[p].__setitem__(Ellipsis, _flip(f[p][()], -1)),
    "truncated": lambda f, p: _replace(f, p, f[p][: max(1, f[p].shape[0] // 2)]),
    "grown": lambda f, p: _replace(f, p, np.concatenate([f[p][()], f[p][:1]])),
    "retyped": lambda f, p: _replace(f, p, f[p][()].astype(np.float32)),
    "scalar": lambda f, p: _replace(f, p, 0),
    "text": lambda f, p: _replace(f, p, np.bytes_(b"0")),
    "deleted": lambda f, p: f.__delitem__(p),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", DATASETS)
@pytest.mark.parametrize("how", DATASET_SPOILS)
def test_a_spoiled_checkpoint_dataset_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], path: str,
                                                 how: str) -> None:
    with h5py.File(trace, "r+") as f:
        DATASET_SPOILS[how](f, path)
    assert_refused(trace, capfd, "its checkpoint")


# -- how an attribute is spoiled ---------------------------------------------------------------------------------

def _set(f: h5py.File, where: str, key: str, value: Any) -> None:
    old = f[where].attrs[key]
    f[where].attrs[key] = value
    assert not np.array_equal(np.asarray(old), np.asarray(f[where].attrs[key])) or type(old) is not type(
        f[where].attrs[key]), f"{where}@{key}: {how_name(value)} changes nothing"


def how_name(value: Any) -> str:
    return repr(value)[:40]


def _text(f: h5py.File, where: str, key: str) -> str:
    v = f[where].attrs[key]
    return v.decode() if isinstance(v, bytes) else str(v)


def _flip_text(text: str, at: int) -> np.bytes_:
    raw = bytearray(text.encode())
    raw[at] ^= 0x01
    return np.bytes_(bytes(raw))


NUMBER_SPOILS: dict[str, Callable[[h5py.File, str, str], None]] = {
    "plus-one": lambda f, w, k: _set(f, w, k, int(f[w].attrs[k]) + 1),
    "minus-one": lambda f, w, k: _set(f, w, k, int(f[w].attrs[k]) - 1),
    "negative": lambda f, w, k: _set(f, w, k, -(2**40)),
    "huge": lambda f, w, k: _set(f, w, k, 2**62),
    "bit-flipped-high": lambda f, w, k: _set(f, w, k, int(f[w].attrs[k]) ^ (1 << 33)),
    "float": lambda f, w, k: _set(f, w, k, float(f[w].attrs[k]) + 0.5),
    "text": lambda f, w, k: _set(f, w, k, str(int(f[w].attrs[k]))),
    "array": lambda f, w, k: _set(f, w, k, np.array([int(f[w].attrs[k])] * 2)),
    "deleted": lambda f, w, k: f[w].attrs.__delitem__(k),
}

TEXT_SPOILS: dict[str, Callable[[h5py.File, str, str], None]] = {
    "bit-flipped-first": lambda f, w, k: _set(f, w, k, _flip_text(_text(f, w, k), 0)),
    "bit-flipped-middle": lambda f, w, k: _set(f, w, k, _flip_text(_text(f, w, k), len(_text(f, w, k)) // 2)),
    "bit-flipped-last": lambda f, w, k: _set(f, w, k, _flip_text(_text(f, w, k), -1)),
    "truncated": lambda f, w, k: _set(f, w, k, np.bytes_(_text(f, w, k)[: len(_text(f, w, k)) // 2].encode())),
    "emptied": lambda f, w, k: _set(f, w, k, np.bytes_(b"")),
    "not-utf8": lambda f, w, k: _set(f, w, k, np.bytes_(b"\xff\xfe" + _text(f, w, k).encode())),
    "a-number": lambda f, w, k: _set(f, w, k, 0),
    "deleted": lambda f, w, k: f[w].attrs.__delitem__(k),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where, key", NUMBER_ATTRS)
@pytest.mark.parametrize("how", NUMBER_SPOILS)
def test_a_spoiled_checkpoint_number_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], where: str, key: str,
                                                how: str) -> None:
    with h5py.File(trace, "r+") as f:
        NUMBER_SPOILS[how](f, where, key)
    assert_refused(trace, capfd, "checkpoint")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where, key", TEXT_ATTRS)
@pytest.mark.parametrize("how", TEXT_SPOILS)
def test_a_spoiled_checkpoint_text_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], where: str, key: str,
                                              how: str) -> None:
    with h5py.File(trace, "r+") as f:
        TEXT_SPOILS[how](f, where, key)
    assert_refused(trace, capfd, "checkpoint")


# -- a field of the ledger or the monitor edited (valid JSON, another value) --------------------------------------

LEDGER = ("sfo", "rounds", "bytes", "stage", "batch", "elapsed")
MONITOR = ("last_eval", "last_test", "eval_time", "n_evals")
FIELD_EDITS: dict[str, Callable[[Any], Any]] = {
    "plus-one": lambda v: (v + 1) if isinstance(v, (int, float)) else [1] + (v or []),
    "minus-one": lambda v: (v - 1) if isinstance(v, (int, float)) else (v or [0, 0])[:-1],
    "doubled": lambda v: (2 * v + 2) if isinstance(v, (int, float)) else (v or [0.5]) * 2,
    "null": lambda v: None if v is not None else [0.5, 0.5],
    "text": lambda v: "12",
    "bool": lambda v: True,
    "huge": lambda v: 2**70,
    "infinite": lambda v: float("inf"),
    "nan": lambda v: float("nan"),
    "deleted": lambda v: KeyError,
}


def _edit_field(f: h5py.File, attr: str, key: str, how: str) -> None:
    record = json.loads(_text(f, "checkpoint", attr))
    new = FIELD_EDITS[how](record[key])
    if new is KeyError:
        del record[key]
    else:
        assert json.dumps(new) != json.dumps(record[key]), f"{attr}.{key}: {how} changes nothing"
        record[key] = new
    f["checkpoint"].attrs[attr] = np.bytes_(json.dumps(record).encode())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attr, key", [*(("ledger", k) for k in LEDGER), *(("monitor", k) for k in MONITOR)])
@pytest.mark.parametrize("how", FIELD_EDITS)
def test_an_edited_ledger_or_monitor_field_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], attr: str,
                                                      key: str, how: str) -> None:
    with h5py.File(trace, "r+") as f:
        _edit_field(f, attr, key, how)
    assert_refused(trace, capfd, "its checkpoint is damaged")


# -- the trace's header that the digest seals ---------------------------------------------------------------------

def _edit_run_config(key: str, value: Any) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        options = json.loads(_text(f, "/", "run_config"))
        assert options.get(key) != value
        options[key] = value
        f.attrs["run_config"] = json.dumps(options, sort_keys=True)
    return edit


def _on_root(spoil: Callable[[h5py.File, str, str], None], key: str) -> Callable[[h5py.File], None]:
    return lambda f: spoil(f, "/", key)


HEADER_SPOILS: dict[str, Callable[[h5py.File], None]] = {
    **{f"{key}-{how}": _on_root(TEXT_SPOILS[how], key)
       for key in SEALED_TEXT for how in ("bit-flipped-middle", "truncated", "deleted")},
    **{f"{key}-{how}": _on_root(NUMBER_SPOILS[how], key)
       for key in SEALED_NUMBERS if key != "f_star" for how in ("plus-one", "deleted")},
    "f_star-changed": lambda f: f.attrs.__setitem__("f_star", float(f.attrs["f_star"]) * 0.5),
    "f_star-nan": lambda f: f.attrs.__setitem__("f_star", float("nan")),
    "f_star-deleted": lambda f: f.attrs.__delitem__("f_star"),
    **{f"run_config-{key}": _edit_run_config(key, value) for key, value in (
        ("T", 7000), ("seed", 5), ("gamma", 0.5), ("batch_size", 2), ("eval_points", 9), ("samples", 3000),
        ("plugin", ["this"]), ("checkpoint_every", "3"), ("algorithm", "cr-psgd"), ("workers", 4))},
    "config-L": lambda f: f.attrs.__setitem__("config", json.dumps({**json.loads(_text(f, "/", "config")), "L": 9.0})),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", HEADER_SPOILS)
def test_a_spoiled_sealed_header_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], how: str) -> None:
    with h5py.File(trace, "r+") as f:
        HEADER_SPOILS[how](f)
    line = assert_refused(trace, capfd)
    assert "Zen of Python" not in capfd.readouterr().out and "Beautiful is better" not in line


UNSEALED_SPOILS: dict[str, Callable[[h5py.File], None]] = {
    "status-unknown": lambda f: f.attrs.__setitem__("status", "resting"),
    "status-a-number": lambda f: f.attrs.__setitem__("status", 3),
    "status-deleted": lambda f: f.attrs.__delitem__("status"),
    "resumes-not-json": lambda f: f.attrs.__setitem__("resumes", "[{"),
    "resumes-not-a-list": lambda f: f.attrs.__setitem__("resumes", "{}"),
    "resumes-not-records": lambda f: f.attrs.__setitem__("resumes", "[1, 2]"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", UNSEALED_SPOILS)
def test_a_spoiled_status_or_history_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], how: str) -> None:
    with h5py.File(trace, "r+") as f:
        UNSEALED_SPOILS[how](f)
    assert_refused(trace, capfd)


# -- the rows the checkpoint matches ------------------------------------------------------------------------------

def _bump(path: str, index: int, by: float = 1) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[path][index] = f[path][index] + by
    return edit


ROW_SPOILS: dict[str, Callable[[h5py.File], None]] = {
    "round-numbers-edited": _bump("rounds/round", 4),
    "sfo-at-the-checkpoint": _bump("rounds/sfo", 19),
    "batch-at-the-checkpoint": _bump("rounds/batch_size", 19),
    "stage-at-the-checkpoint": _bump("rounds/stage", 19),
    "bytes-of-a-round": _bump("rounds/bytes", 3),
    "rounds-cut-before-the-checkpoint": lambda f: [ds.resize((10,)) for ds in f["rounds"].values()],
    "evals-cut-before-the-checkpoint": lambda f: [ds.resize((2,)) for ds in f["evals"].values()],
    "last-evaluation-loss": _bump("evals/loss", 3, 0.25),
    "last-evaluation-round": _bump("evals/round", 3, 30),
    "rounds-sfo-deleted": lambda f: f["rounds"].__delitem__("sfo"),
    "rounds-sfo-retyped": lambda f: _replace(f, "rounds/sfo", f["rounds/sfo"][()].astype(np.float64)),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ROW_SPOILS)
def test_rows_that_do_not_match_the_checkpoint_are_refused(trace: Path, capfd: pytest.CaptureFixture[str],
                                                           how: str) -> None:
    with h5py.File(trace, "r+") as f:
        ROW_SPOILS[how](f)
    assert_refused(trace, capfd, "its checkpoint is damaged")


# -- the structure -----------------------------------------------------------------------------------------------

def _link(f: h5py.File, path: str, link: Any) -> None:
    del f[path]
    f[path] = link


STRUCTURE_SPOILS: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "checkpoint-a-dataset": (lambda f: _replace(f, "checkpoint", np.arange(3)), "its checkpoint is damaged"),
    "algorithm-a-dataset": (lambda f: _replace(f, "checkpoint/algorithm", np.arange(3)), "its checkpoint is damaged"),
    "algorithm-deleted": (lambda f: f.__delitem__("checkpoint/algorithm"), "its checkpoint is damaged"),
    "rngs-a-soft-link": (lambda f: _link(f, "checkpoint/rngs", h5py.SoftLink("/rounds/round")),
                         "its checkpoint is damaged"),
    "rngs-an-external-link": (lambda f: _link(f, "checkpoint/rngs", h5py.ExternalLink("/etc/passwd", "/x")),
                              "its checkpoint is damaged"),
    "x-an-external-link-digest-deleted": (lambda f: (_link(f, "checkpoint/algorithm/x", h5py.ExternalLink(
        "/dev/zero", "/x")), f["checkpoint"].attrs.__delitem__("digest")), "is a link"),
    "rows-an-external-link": (lambda f: _link(f, "rounds/sfo", h5py.ExternalLink("/dev/zero", "/x")), "is a link"),
    "checkpoint-a-soft-link": (lambda f: (f.copy("checkpoint", "elsewhere"),
                                          _link(f, "checkpoint", h5py.SoftLink("/elsewhere"))),
                               "its checkpoint is damaged"),
    "extra-dataset": (lambda f: f.create_dataset("checkpoint/algorithm/extra", data=np.zeros(2)),
                      "its checkpoint is damaged"),
    "extra-attribute": (lambda f: f["checkpoint/algorithm"].attrs.__setitem__("extra", np.bytes_(b"1")),
                        "its checkpoint is damaged"),
    "format-1-without-digest": (lambda f: (f["checkpoint"].attrs.__setitem__("format", 1),
                                           f["checkpoint"].attrs.__delitem__("digest")),
                                "format 1, without a digest) and cannot be verified"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", STRUCTURE_SPOILS)
def test_a_checkpoint_of_another_shape_is_refused(trace: Path, capfd: pytest.CaptureFixture[str], how: str) -> None:
    spoil, says = STRUCTURE_SPOILS[how]
    with h5py.File(trace, "r+") as f:
        spoil(f)
    assert_refused(trace, capfd, says)


# -- a forged seal: the edit, then the digest recomputed ------------------------------------------------------------

def _rng(row: int, word: int, value: int) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        words = f["checkpoint/rngs"][()]
        words[row, word] = value
        f["checkpoint/rngs"][...] = words
    return edit


def _field(attr: str, key: str, value: Any) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        record = json.loads(_text(f, "checkpoint", attr))
        record[key] = value(record[key]) if callable(value) else value
        f["checkpoint"].attrs[attr] = np.bytes_(json.dumps(record).encode())
    return edit


FORGED: dict[str, tuple[Callable[[h5py.File], None], str]] = {
    "rngs-zeroed": (lambda f: f["checkpoint/rngs"].__setitem__(Ellipsis, 0), "random stream"),
    "rng-increment-even": (_rng(1, 2, 2), "random stream"),
    "rng-increment-of-another-worker": (lambda f: _rng(0, 2, int(f["checkpoint/rngs"][1, 2]))(f), "random stream"),
    "rng-has-uint32-out-of-range": (_rng(2, 4, 7), "buffered value"),
    "rng-uinteger-out-of-range": (_rng(2, 5, 2**40), "buffered value"),
    "ledger-rounds-ahead": (_field("ledger", "rounds", 25), "ledger's sfo"),  # the "264 rounds of 209" case
    "ledger-rounds-beyond-the-rows": (_field("ledger", "rounds", 264), "ahead of its rows"),
    "ledger-sfo": (_field("ledger", "sfo", lambda v: v + 3), "ledger's sfo"),
    "ledger-bytes": (_field("ledger", "bytes", lambda v: v * 2), "bytes"),
    "ledger-negative": (_field("ledger", "stage", -1), "not a count"),
    "monitor-n-evals": (_field("monitor", "n_evals", lambda v: v + 1), "evaluations"),
    "monitor-last-eval": (_field("monitor", "last_eval", lambda v: [v[0], v[1], v[2] * 2, *v[3:]]),
                          "last evaluation"),
    "evals-and-monitor-together": (lambda f: (_field("monitor", "n_evals", 3)(f),
                                              f["checkpoint"].attrs.__setitem__("evals", 3)),
                                   "last evaluation"),
    "plan-ahead": (lambda f: f["checkpoint"].attrs.__setitem__("plan", int(f["checkpoint"].attrs["plan"]) + 1),
                   "evaluation plan"),
    "plan-negative": (lambda f: f["checkpoint"].attrs.__setitem__("plan", -1), "evaluation plan"),
    "iterate-nan": (lambda f: f["checkpoint/algorithm/x"].__setitem__(0, np.nan), "not finite"),
    "iterate-too-short": (lambda f: _replace(f, "checkpoint/algorithm/x", np.zeros(3)), "numbers, the problem"),
    "state-of-text": (lambda f: f.create_dataset("checkpoint/algorithm/extra", data=np.array([b"ab"])),
                      "not numbers"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", FORGED)
def test_an_edit_with_a_recomputed_digest_is_still_refused(trace: Path, capfd: pytest.CaptureFixture[str],
                                                           how: str) -> None:
    spoil, says = FORGED[how]
    with h5py.File(trace, "r+") as f:
        spoil(f)
        seal(f)
    assert_refused(trace, capfd, says)


# -- what stays accepted -------------------------------------------------------------------------------------------

def test_the_fixture_is_covered_whole(base: Path) -> None:
    """Every dataset and attribute of the checkpoint has cases above (a new field must get its own)."""
    found: list[str] = []
    with h5py.File(base) as f:
        f["checkpoint"].visititems(lambda name, item: found.append(name) if isinstance(item, h5py.Dataset) else None)
        attrs = [(g, k) for g in ("checkpoint", "checkpoint/algorithm", "checkpoint/algorithm/plan")
                 for k in f[g].attrs]
    assert sorted(f"checkpoint/{n}" for n in found) == sorted(DATASETS)
    assert sorted(attrs) == sorted([*NUMBER_ATTRS, *TEXT_ATTRS])


@pytest.mark.timeout(60)
def test_an_untouched_or_resealed_checkpoint_resumes(trace: Path, tmp_path: Path) -> None:
    """The digest is the file's: sealing it again changes nothing, and the trace resumes to the end."""
    with h5py.File(trace, "r+") as f:
        sealed = bytes(f["checkpoint"].attrs["digest"])
        seal(f)
        assert bytes(f["checkpoint"].attrs["digest"]) == sealed
        assert int(f["checkpoint"].attrs["format"]) == 2
    res = cli(["--resume", str(trace)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "from round 20" in res.stderr
    done = load_trace(trace)
    assert done.status == "complete" and len(done.rounds) == done.attrs["rounds_total"]
    assert done.attrs["resumes"][0]["after_round"] == 20


@pytest.mark.timeout(60)
def test_zeroed_random_streams_are_refused_at_once(trace: Path, tmp_path: Path) -> None:
    """Were they restored, numpy's bounded draws from a PCG64 stream with increment 0 would loop for ever, in C,
    deaf to SIGTERM (measured before the fix: 100% CPU, the trace left 'running')."""
    with h5py.File(trace, "r+") as f:
        f["checkpoint/rngs"][...] = 0
    before = sha(trace)
    t0 = time.monotonic()
    res = cli(["--resume", str(trace)], tmp_path, timeout=30)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "random stream" in lines[0] and str(trace) in lines[0], res.stderr
    assert sha(trace) == before


# -- plug-ins: a trace never chooses what code runs -----------------------------------------------------------------

MARKING_PLUGIN = '''
import os
from pathlib import Path

Path(os.environ.get("CRPSGD_TEST_MARK", str(Path(__file__).with_suffix(".imported")))).touch()

from crpsgd_mpi import ALGORITHMS


class Marked(ALGORITHMS.get("psgd")):
    """PSGD from a plug-in that leaves a mark when imported."""


ALGORITHMS.register("marked-psgd", Marked, replace=True)
'''


@pytest.fixture
def plugin_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(the plug-in file, its mark, a trace of its run stopped at round 30, checkpoint at 20)."""
    plugin = tmp_path / "marking.py"
    plugin.write_text(MARKING_PLUGIN)
    mark = tmp_path / "marking.imported"
    out = tmp_path / "t.h5"
    res = cli([*SMALL, "--plugin", str(plugin), "--algorithm", "marked-psgd", "--out", str(out), "--quiet",
               "--checkpoint-every", "10", "--fault", "0:30"], tmp_path)
    assert res.returncode == 1, res.stderr
    assert mark.exists()
    mark.unlink()
    return plugin, mark, out


@pytest.mark.timeout(60)
def test_a_plugin_named_by_the_trace_is_not_imported(tmp_path: Path, plugin_run: tuple[Path, Path, Path]) -> None:
    plugin, mark, out = plugin_run
    before = sha(out)
    res = cli(["--resume", str(out)], tmp_path)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(f"crpsgd_mpi: error: resume='{out}': its run used plug-ins")
    assert repr(str(plugin)) in lines[0] and f"--plugin {plugin}" in lines[0]
    assert not mark.exists() and sha(out) == before
    # given again, on the command line or in the user's own TOML file: imported, and the run goes on
    res = cli(["--resume", str(out), "--plugin", str(plugin)], tmp_path)
    assert res.returncode == 0 and "from round 20" in res.stderr, res.stderr
    assert mark.exists() and load_trace(out).status == "complete"


@pytest.mark.timeout(60)
def test_a_plugin_given_in_the_users_config_file_counts(tmp_path: Path, plugin_run: tuple[Path, Path, Path]) -> None:
    plugin, mark, out = plugin_run
    (tmp_path / "mine.toml").write_text(f"plugin = [{json.dumps(str(plugin))}]\n")
    res = cli(["--resume", str(out), "--config", str(tmp_path / "mine.toml")], tmp_path)
    assert res.returncode == 0, res.stderr
    assert mark.exists()


def _trace_naming(plugins: list[str], src: Path, dst: Path, reseal: bool) -> Path:
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        options = json.loads(_text(f, "/", "run_config"))
        options["plugin"] = plugins
        f.attrs["run_config"] = json.dumps(options, sort_keys=True)
        if reseal:
            seal(f)
        else:
            del f["checkpoint"]  # no checkpoint, no digest: the run would start over
    return dst


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reseal", [True, False], ids=["resealed-checkpoint", "no-checkpoint"])
def test_a_plugin_slipped_into_the_trace_is_refused_not_imported(tmp_path: Path, base: Path, reseal: bool) -> None:
    """`plugin = ["this"]` printed the Zen of Python on resume; a plug-in file that leaves a mark leaves none."""
    (tmp_path / "evil.py").write_text(MARKING_PLUGIN)
    mark = tmp_path / "evil.imported"
    out = _trace_naming(["this", str(tmp_path / "evil.py")], base, tmp_path / "t.h5", reseal)
    before = sha(out)
    res = cli(["--resume", str(out)], tmp_path)
    assert res.returncode == 2 and "Beautiful is better" not in res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--plugin this --plugin " in lines[0] and "'this'" in lines[0], res.stderr
    assert not mark.exists() and sha(out) == before


@pytest.mark.timeout(60)
def test_the_api_resume_imports_only_the_callers_plugins(tmp_path: Path, base: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from crpsgd_mpi import resume

    (tmp_path / "evil.py").write_text(MARKING_PLUGIN)
    mark = tmp_path / "api.imported"
    monkeypatch.setenv("CRPSGD_TEST_MARK", str(mark))
    out = _trace_naming([str(tmp_path / "evil.py")], base, tmp_path / "t.h5", reseal=True)
    before = sha(out)
    with pytest.raises(InputError, match="its run used plug-ins") as e:
        resume(out, quiet=True)
    assert e.value.field == "resume" and "--plugin " in str(e.value)
    assert not mark.exists() and sha(out) == before
    trace = resume(out, quiet=True, plugin=[str(tmp_path / "evil.py")])  # the caller's own: imported
    assert mark.exists() and trace is not None and trace.status == "complete"


# -- load_trace of a damaged file ---------------------------------------------------------------------------------

LOAD_SPOILS: dict[str, Callable[[Path], None]] = {
    "empty-file": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "first-half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "not-a-trace": lambda p: (p.unlink(), h5py.File(p, "w").close()),
    "rounds-a-dataset": lambda p: _h5(p, lambda f: _replace(f, "rounds", np.arange(3))),
    "columns-of-two-lengths": lambda p: _h5(p, lambda f: f["rounds/sfo"].resize((7,))),
    "column-two-dimensional": lambda p: _h5(p, lambda f: _replace(f, "evals/loss", np.zeros((4, 2)))),
    "column-of-text": lambda p: _h5(p, lambda f: _replace(f, "rounds/sfo", np.array([b"a"] * 30))),
    "column-a-group": lambda p: _h5(p, lambda f: (f["rounds"].__delitem__("sfo"), f.create_group("rounds/sfo"))),
    "config-not-json": lambda p: _h5(p, lambda f: f.attrs.__setitem__("config", "{\"L\": ")),
    "run_config-not-json": lambda p: _h5(p, lambda f: f.attrs.__setitem__("run_config", "nope")),
    "versions-a-list": lambda p: _h5(p, lambda f: f.attrs.__setitem__("versions", "[]")),
    "resumes-an-object": lambda p: _h5(p, lambda f: f.attrs.__setitem__("resumes", "{}")),
    "resumes-deeply-nested": lambda p: _h5(p, lambda f: f.attrs.__setitem__("resumes", "[" * 100000)),
    "status-unknown": lambda p: _h5(p, lambda f: f.attrs.__setitem__("status", "resting")),
    "status-not-utf8": lambda p: _h5(p, lambda f: f.attrs.__setitem__("status", np.bytes_(b"\xff\xfe"))),
    "final-a-dataset": lambda p: _h5(p, lambda f: f.create_dataset("final", data=np.zeros(2))),
    "final-x-text": lambda p: _h5(p, lambda f: f.create_dataset("final/x", data=np.array([b"x"]))),
    "column-an-external-link": lambda p: _h5(p, lambda f: _link(f, "rounds/sfo", h5py.ExternalLink("/dev/zero", "/x"))),
    "group-an-external-link": lambda p: _h5(p, lambda f: _link(f, "evals", h5py.ExternalLink("/dev/zero", "/x"))),
    "final-a-soft-link": lambda p: _h5(p, lambda f: f.__setitem__("final", h5py.SoftLink("/rounds"))),
}


def _h5(path: Path, edit: Callable[[h5py.File], object]) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize("how", LOAD_SPOILS)
def test_load_trace_of_a_damaged_file_raises_trace_error(trace: Path, how: str) -> None:
    LOAD_SPOILS[how](trace)
    with pytest.raises(TraceError) as e:
        load_trace(trace)
    assert isinstance(e.value, InputError) and e.value.field == "trace" and str(trace) in str(e.value)
    assert "\n" not in str(e.value)


def test_load_trace_parses_every_json_attribute(base: Path) -> None:
    t = load_trace(base)
    assert isinstance(t.attrs["config"], dict) and isinstance(t.attrs["versions"], dict)
    assert isinstance(t.attrs["run_config"], dict) and t.attrs["run_config"]["T"] == 6000


FUZZ = r'''
import os, sys, random
from crpsgd_mpi.errors import TraceError
from crpsgd_mpi.trace import load_trace
src, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
rnd = random.Random(14)
seen = {"ok": 0, "TraceError": 0}
for i in range(n):
    raw = bytearray(data)
    for _ in range(1 + i % 4):
        raw[rnd.randrange(len(raw))] ^= 1 << rnd.randrange(8)
    open(work, "wb").write(bytes(raw))
    try:
        load_trace(work)
        seen["ok"] += 1
    except TraceError as exc:
        assert "\n" not in str(exc) and work in str(exc)
        seen["TraceError"] += 1
print(seen)
'''


@pytest.mark.timeout(120)
def test_load_trace_of_bit_flipped_files_raises_nothing_but_trace_error(base: Path, tmp_path: Path) -> None:
    """300 copies of a trace with 1 to 4 bits flipped at random places (seeded): each loads, or raises TraceError
    (in a child process: a crash of the HDF5 library would show as one, not end the test run)."""
    res = subprocess.run([sys.executable, "-c", FUZZ, str(base), str(tmp_path / "f.h5"), "300"],
                         capture_output=True, text=True, timeout=110,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr[-3000:]
    print(res.stdout)
