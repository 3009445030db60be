"""Issue 14: the suite finds hostile cases itself. Hypothesis generates hostile input against the promises of the
README (Failures, Resume, Plug-ins) instead of listing known cases (tests/test_hostile_inputs.py lists those):

- bad input: exit 2, exactly one standard-error line ``crpsgd_mpi: error: FIELD=...`` naming the field (or the
  file), no ``Traceback``, nothing left at ``--out`` (no file, no ``*.creating`` or other temporary);
- good input: exit 0 and a complete trace; nothing the run reads is changed (byte for byte);
- nothing hangs: whatever runs in a subprocess runs under a time limit.

(a) option values from hostile alphabets, (b) TOML documents for ``--config``, (c) damaged traces and checkpoints
given to ``--resume`` and ``load_trace``, (d) damaged data files for ``--dataset``, (e) misbehaving plug-ins.

CI runs this file reproducibly (``derandomize=True``: the examples depend only on the test's source) and without
shrinking (a failing property fails on its first failing example; the known ones are ``@example``\\s, tried first).
To look harder: ``CRPSGD_PROPERTY_SCALE=10`` (ten times the examples), ``CRPSGD_PROPERTY_RANDOM=1`` (fresh random
examples each run), ``CRPSGD_PROPERTY_SHRINK=1`` (shrink a failure to a minimal example),
``CRPSGD_PROPERTY_GENERATED_ONLY=1`` (skip the ``@example``\\s, to see what generation finds
beyond them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import date, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from conftest import run_cli
from crpsgd_mpi.config import Config
from crpsgd_mpi.outcome import one_line
from crpsgd_mpi.trace import load_trace

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "crpsgd_mpi.run"]
PREFIX = "crpsgd_mpi: error: "

# ---- the profile: reproducible, sized for CI ---------------------------------------------------------------------

_SCALE = float(os.environ.get("CRPSGD_PROPERTY_SCALE", "1"))
_PHASES = ([] if os.environ.get("CRPSGD_PROPERTY_GENERATED_ONLY") == "1" else [Phase.explicit]) \
    + [Phase.reuse, Phase.generate, Phase.target]
CI = settings(
    derandomize=os.environ.get("CRPSGD_PROPERTY_RANDOM") != "1",
    database=None,
    deadline=None,
    print_blob=True,
    phases=_PHASES + [Phase.shrink] if os.environ.get("CRPSGD_PROPERTY_SHRINK") == "1" else _PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)


def examples(n: int) -> settings:
    """The CI profile with n examples (times $CRPSGD_PROPERTY_SCALE)."""
    return settings(CI, max_examples=max(1, round(n * _SCALE)))


# ---- the promises, checked -------------------------------------------------------------------------------------


@dataclass
class Result:
    code: int | None
    out: str
    err: str
    timed_out: bool = False

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def in_process(argv: list[str]) -> Result:
    """The command line in this process (conftest's run_cli), its output captured; an exception that escapes it is
    what `python -m crpsgd_mpi.run` would show as a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")  # shown on standard error as `python -m crpsgd_mpi.run` shows them
        warnings.showwarning = _show_warning  # (pytest's own recorder would keep them out of sight)
        try:
            code = run_cli(*argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # noqa: BLE001 - any other exception is the bug this property looks for
            import traceback

            return Result(None, out.getvalue(), err.getvalue() + "Traceback (in process):\n" + traceback.format_exc())
    return Result(code, out.getvalue(), err.getvalue())


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
                  line: str | None = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def subprocess_cli(argv: list[str], cwd: Path, cache: Path, timeout: float = 45) -> Result:
    """`python -m crpsgd_mpi.run argv` in its own session, killed (the whole group) after `timeout` s."""
    env = {**os.environ, "CRPSGD_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*RUN, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Result(None, out, err, timed_out=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "(absent)"


def field_prefixes(names: set[str]) -> list[str]:
    """The starts of a refusal line that name one of `names` (as InputError prints a field: non-printable
    characters as '?', and `say` puts the line on one line)."""
    return [one_line(PREFIX + "".join(c if c.isprintable() else "?" for c in n) + "=") for n in names]


def check_refusal(res: Result, names: set[str], paths: list[Path] = ()) -> None:
    """Exactly one line, ours, naming one of `names` (or, for argparse, its option), and every path in `paths`."""
    assert res.code == 2, f"exit {res.code}"
    assert len(res.lines) == 1, f"{len(res.lines)} lines on standard error: {res.lines}"
    line = res.lines[0]
    assert line.startswith(PREFIX), f"not our line: {line!r}"
    flags = [PREFIX + "argument --" + n.replace("_", "-") + ":" for n in names]
    assert any(line.startswith(p) for p in field_prefixes(names) + flags), f"names none of {sorted(names)}: {line!r}"
    for p in paths:
        assert repr(str(p)) in line, f"does not name {str(p)!r}: {line!r}"


def check_nothing_left(out: Path, where: Path) -> None:
    assert not out.exists() and not out.is_symlink(), f"--out {out} exists after a refusal"
    left = [p.name for p in where.rglob("*") if p.is_file() and (p.name.endswith((".creating", ".writing", ".probe"))
                                                                  or p.name.startswith("." + out.name))]
    assert not left, f"temporaries left: {left}"
    if out.parent.exists():
        assert not any(out.parent.iterdir()), f"the --out folder is not empty: {list(out.parent.iterdir())}"


def check_outcome(res: Result, out: Path, where: Path, names: set[str], allowed: set[int] = frozenset({0, 2}),
                  paths: list[Path] = ()) -> None:
    """The run accepted its input (exit 0, a complete trace) or refused it as bad input promises; a failure (1) or a
    divergence (3), where `allowed`, is one line of ours and a trace that says so."""
    note(f"exit {res.code}; stderr: {res.err[-2000:]!r}")
    assert not res.timed_out, "no exit within the time limit (a hang)"
    assert "Traceback" not in res.err + res.out, f"a traceback:\n{res.err[-3000:]}"
    assert res.code in allowed, f"exit status {res.code}, expected one of {sorted(allowed)}: {res.lines}"
    if res.code == 2:
        check_refusal(res, names, paths)
        check_nothing_left(out, where)
    elif res.code == 0:
        status = load_trace(out).status
        assert status == "complete", f"exit 0 but the trace says {status!r}"
    else:
        word = {1: "failed", 3: "diverged", 130: "interrupted"}.get(res.code, "?")
        assert len(res.lines) == 1 and res.lines[0].startswith(f"crpsgd_mpi: {word}"), res.lines
        if out.exists():  # (a plug-in's create() may fail before the trace exists)
            assert load_trace(out).status == word, f"exit {res.code} but the trace says {load_trace(out).status!r}"


# ---- (a) option values from hostile alphabets -----------------------------------------------------------------

#: Pieces hostile number and name texts are made of: other scripts' digits, full-width and superscript digits, spaces
#: of every kind, signs (and the minus sign), exponents, nan/inf, underscores, NUL, hex/octal prefixes, byte-order
#: marks and zero-width spaces, 64-bit boundaries, denormals, unit letters.
FRAGMENTS = ["0", "1", "2", "7", "9", "42", "+", "-", "\u2212", ".", "e", "E", "e+", "e-", "E308", "e400", "e-400",
             "_", " ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\u2028", "nan", "NaN", "inf", "-inf",
             "Infinity", "\u0663", "\u0661\u0660", "\uff11", "\uff10", "\u00b2", "\U0001d7d9", "\u0966", "0x", "0b",
             "0o", "1_000", "9" * 19, "9" * 25, str(2**64), str(2**63 - 1), str(2**63), str(2**62 + 1), "\x00", ":",
             "s", "m", "h", "d", "off", "kill", ",", "'", '"', "\\", "/", "5e-324", "1e-320", "\ufeff", "\u200b",
             "%s", "{}", "\x1b[31m"]
#: Values each option accepts, so that accepted values are explored too (decorated by the fragments above).
GOOD = {
    "algorithm": ["cr-psgd", "catalyst", "psgd", "local-sgd"], "schedule": ["geometric", "linear", "step", "norm-test"],
    "model": ["logreg"], "device": ["cpu"], "dataset": ["synthetic"], "fmnist_dir": ["."], "storage": list(
        ("auto", "dense", "sparse")), "regularizer": ["l2", "nonconvex", "none"], "backend": ["local", "auto"],
    "reduction": ["ordered", "allreduce"], "period": ["1", "3", "stich", "prsgd", "PRSGD"],
    "fault": ["0:3", "1:0", "0:1000"], "checkpoint_every": ["off", "5", "1", "0.5s", "1m", "1h"],
}
#: Options a hostile value is not generated for here: where the trace goes (set by the test) and plug-ins (imported
#: as module names: random text could import any module; (e) generates plug-ins).
NOT_GENERATED = {"out", "plugin"}
OPTIONS = [f.name for f in fields(Config)
           if f.name not in NOT_GENERATED and not str(f.type).startswith(("bool", "tuple"))]
#: The base run: fast (a few hundred ms) when accepted.
BASE = ["--backend", "local", "--workers", "2", "--T", "60", "--samples", "200", "--features", "3", "--eval-points",
        "2", "--checkpoint-every", "off"]
BASE_FIELDS = {"backend", "workers", "T", "samples", "features", "eval_points", "checkpoint_every"}

hostile_text = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=6).map("".join),
    st.text(max_size=8),
    st.integers(-(10**30), 10**30).map(str),
    st.integers(0, 200).map(str),
    st.floats().map(repr),
    st.floats(0.0, 10.0).map(str),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["9", "0", "1", " ", "\u0663", "e", "-"]), st.integers(40, 100_000)),
)


def text_for(option: str) -> st.SearchStrategy[str]:
    good = GOOD.get(option)
    if good is None:
        return hostile_text
    decorated = st.builds(lambda a, g, b: a + g + b, st.sampled_from(["", "", " ", "\u00a0", "\x00", "\u200b"]),
                          st.sampled_from(good), st.sampled_from(["", "", " ", "\n", "\x00", ":kill"]))
    return st.one_of(hostile_text, st.sampled_from(good), decorated, decorated.map(str.upper))


def too_slow_to_run(cfg: Config) -> str | None:
    """Why an accepted configuration is not run here (it would take long, need another machine or kill the test
    process); None: it is run."""
    N = cfg.workers or 10
    point = cfg.fault_point()
    plan = cfg.checkpoint_plan()
    reasons = [
        (cfg.backend == "mpi", "backend mpi"), (cfg.model != "logreg" or cfg.device != "cpu", "a network"),
        (point is not None and point[2] == "kill", "a SIGKILL fault would kill this process"),
        (cfg.dataset == "fashion-mnist", "Fashion-MNIST is large"),
        (cfg.samples * (cfg.features + 1) > 2_000_000 or cfg.features > 20_000, "large synthetic data"),
        (N > 512 or cfg.T > 5000 or N * cfg.T > 200_000, "many rounds"),
        ((cfg.eval_points or 40) > 500, "many evaluations"),  # unset: 40 (networks: at most 40)
        (plan is not None and plan[0] == "rounds" and cfg.T / plan[1] > 500, "many checkpoints"),
        (plan is not None and plan[0] == "seconds" and plan[1] < 0.5 and cfg.T > 200, "many checkpoints"),
    ]
    return next((why for cond, why in reasons if cond and why), None)


def vet(argv: list[str]) -> str | None:
    """Parse argv as the command line does; why it is not run (see too_slow_to_run) or None."""
    from crpsgd_mpi.run import parse

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cfg = parse(argv)[0]
        except BaseException:  # noqa: BLE001 - refused (or a bug): the command line is run and judged
            return None
    return too_slow_to_run(cfg) if isinstance(cfg, Config) else "not a run"


def run_option_values(pairs: list[tuple[str, str, bool]]) -> None:
    with tempfile.TemporaryDirectory(prefix="prop-a-") as d, _cwd(Path(d)):
        where = Path(d)
        out = where / "out" / "t.h5"
        argv = list(BASE)
        for option, text, joined in pairs:
            flag = "--" + option.replace("_", "-")
            argv += [f"{flag}={text}"] if joined else [flag, text]
        argv += ["--quiet", "--out", str(out)]
        why = vet(argv)
        if why is not None:
            note(f"accepted, not run: {why}")
            return
        names = BASE_FIELDS | {o for o, _, _ in pairs}
        allowed = {0, 2} | ({3} if names & STEPPING else set()) | ({1} if "fault" in names else set())
        check_outcome(in_process(argv), out, where, names, allowed)


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("option", OPTIONS)
@examples(20)
@given(data=st.data())
def test_option_values(option: str, data: st.DataObject) -> None:
    """(a) Any text for any option: accepted and run (exit 0), or refused in one line naming it (exit 2)."""
    text = data.draw(text_for(option), label="text")
    joined = data.draw(st.booleans(), label="--option=TEXT")
    run_option_values([(option, text, joined)])


#: Texts known to be hostile (tests/test_hostile_inputs.py, and what generation found), tried on every option.
#: Options whose valid values may make a run diverge (exit 3): the step size and what shapes it (a weight decay of
#: 1e300 multiplies x by 1 - gamma wd).
STEPPING = {"gamma", "weight_decay", "momentum", "nesterov", "gamma_factor", "gamma_schedule", "gamma_milestones",
            "gamma_every", "warmup_rounds"}
KNOWN_TEXTS = ["\u0663\u0660\u0660", "\uff11\uff10\uff10", "1_000", " 50", "1e3", "nan", "inf", "-0.0", "1e400",
               "9" * 60, str(2**63), "x\x00y", "", "-1", "0" * 4301, "9" * 256, "1e300"]
INT_OPTIONS = [f.name for f in fields(Config) if str(f.type).startswith("int")]


def _known_texts(test: Callable) -> Callable:
    for text in reversed(KNOWN_TEXTS):
        test = example(text=text, joined=False)(test)
    return test


@pytest.mark.timeout(300)
@pytest.mark.parametrize("option", OPTIONS)
@examples(3)
@_known_texts
@given(text=st.sampled_from(KNOWN_TEXTS), joined=st.booleans())
def test_known_texts(option: str, text: str, joined: bool) -> None:
    """(a) The known hostile texts (each an @example), on every option."""
    run_option_values([(option, text, joined)])


@pytest.mark.timeout(300)
@examples(60)
@given(pairs=st.lists(st.sampled_from(OPTIONS).flatmap(
    lambda o: st.tuples(st.just(o), text_for(o), st.booleans())), min_size=2, max_size=4))
def test_several_options_at_once(pairs: list[tuple[str, str, bool]]) -> None:
    """(a) Hostile values that meet (relations between options: eval_points and T, workers and samples, ...)."""
    run_option_values(pairs)


# ---- (b) TOML documents for --config ----------------------------------------------------------------------------

KNOWN_KEYS = [f.name for f in fields(Config) if f.name not in ("plugin", "backend")]
toml_scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 2**62, 2**62 + 1, 2**63 - 1, 2**63, -(2**63), 10**30, 10**400]),
    st.floats(),
    hostile_text.filter(lambda s: len(s) < 5000),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.times(),
)
toml_value = st.recursive(toml_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
#: A key: one the Config knows (with '-' or '_'), or not.
toml_key = st.one_of(st.sampled_from(KNOWN_KEYS), st.sampled_from(KNOWN_KEYS).map(lambda k: k.replace("_", "-")),
                     st.text(min_size=1, max_size=10), st.sampled_from(["base", "runs", "Config", "t", "T ", ""]))
#: Values for the keys whose strings name things to import or start.
SPECIAL_VALUES = {
    "plugin": st.sampled_from(["", "no_such_module_xyz", "./none.py", "x\x00.py", ".", "/", ["a", 1], [""], 5, True,
                               {"a": "b"}, [[]], "crpsgd_mpi.nope"]),
    "backend": st.sampled_from(["local", "auto", "LOCAL", "", "mpi\x00", 1, ["local"], {"x": 1}, True]),
}
BASE_TOML = {"T": 60, "samples": 200, "features": 3, "eval_points": 2, "workers": 2, "checkpoint_every": "off"}


@st.composite
def toml_documents(draw: st.DrawFn) -> dict:
    doc = dict(BASE_TOML)
    for key in draw(st.lists(toml_key, min_size=1, max_size=4)):
        doc[key] = draw(SPECIAL_VALUES[key] if key in SPECIAL_VALUES else toml_value)
    for key in draw(st.lists(st.sampled_from(sorted(SPECIAL_VALUES)), max_size=1)):
        doc[key] = draw(SPECIAL_VALUES[key])
    return doc


#: Damage to TOML text: cuts, duplicated lines, and what TOML's grammar hangs on.
TOML_JUNK = ["[", "]", "=", '"', "'", "'''", '"""', "\\", "\\u", "\n", "\r", "[[T]]", "[T]", "\x00", "\ufeff", "#",
             "T = ", "T = 1\n", "1979-05-27T", "0x", "inf", "nan", ",", "{", "}", "\t", "\x7f", "\u2028", "a.b.c = 1\n"]


@st.composite
def damaged_toml(draw: st.DrawFn) -> bytes:
    text = tomli_w.dumps(draw(toml_documents()))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 20)))
        how = draw(st.sampled_from(["cut", "insert", "replace", "duplicate", "truncate"]))
        junk = draw(st.sampled_from(TOML_JUNK) | st.text(max_size=3))
        text = {"cut": text[:i] + text[j:], "insert": text[:i] + junk + text[i:],
                "replace": text[:i] + junk + text[j:], "duplicate": text[:j] + text[i:j] + text[j:],
                "truncate": text[:i]}[how]
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        k = draw(st.integers(0, len(data)))
        data = data[:k] + draw(st.binary(max_size=3)) + data[k:]
    return data


def run_config_file(data: bytes, doc_keys: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="prop-b-") as d, _cwd(Path(d)):
        where = Path(d)
        path, out = where / "c.toml", where / "out" / "t.h5"
        path.write_bytes(data)
        before = digest(path)
        argv = ["--backend", "local", "--config", str(path), "--quiet", "--out", str(out)]
        why = vet(argv)
        if why is not None:
            note(f"accepted, not run: {why}")
            return
        res = in_process(argv)
        names = {"config", "backend", "out"} | {f.name for f in fields(Config)} | set(doc_keys) \
            | {k.replace("-", "_") for k in doc_keys}
        allowed = {0, 2, 1, 3}  # a fault and the step's settings may be in the file
        check_outcome(res, out, where, names, allowed)
        if res.code == 2 and res.lines[0].startswith(PREFIX + "config="):
            assert repr(str(path)) in res.lines[0], f"the line does not name the file: {res.lines[0]!r}"
        if res.code in (1, 3):
            cfg = tomllib_loads(data)
            assert ("fault" in cfg if res.code == 1 else bool(STEPPING & {k.replace("-", "_") for k in cfg})), \
                f"exit {res.code} without a fault or a step setting"
        assert digest(path) == before, "the config file was changed"


def tomllib_loads(data: bytes) -> dict:
    import tomllib

    return {k.replace("-", "_"): v for k, v in tomllib.loads(data.decode("utf-8-sig")).items()}


@pytest.mark.timeout(300)
@examples(80)
@example(doc={**BASE_TOML, "T": 1e300})
@example(doc={**BASE_TOML, "T": date(1979, 5, 27)})
@example(doc={**BASE_TOML, "rho": float("nan")})
@example(doc={**BASE_TOML, "T": 2**63})
@example(doc={**BASE_TOML, "intercept": 1})
@example(doc={**BASE_TOML, "base": {"T": 5}})
@example(doc={**BASE_TOML, "a\nb": 1})
@example(doc={**BASE_TOML, "rho": 10**400})
@example(doc={**BASE_TOML, "checkpoint_every": 2.5})
@example(doc={**BASE_TOML, "fault": "5:1"})
@example(doc={**BASE_TOML, "plugin": 5})
@example(doc={**BASE_TOML, "period": "0" * 4301})
@given(doc=toml_documents())
def test_toml_documents(doc: dict) -> None:
    """(b) Known and unknown keys, values of every TOML type (tables, arrays, dates, booleans, huge integers)."""
    run_config_file(tomli_w.dumps(doc).encode(), list(doc))


@pytest.mark.timeout(300)
@examples(80)
@example(data=b"T = \n")
@example(data=b"T = 100\xff\n")
@example(data=b"T = " + b"[" * 2000 + b"]" * 2000 + b"\n")
@example(data=b"T = " + b"9" * 5000 + b"\n")
@given(data=damaged_toml())
def test_damaged_toml_text(data: bytes) -> None:
    """(b) TOML text damaged: cut, spliced with what TOML's grammar hangs on, with bytes that are not UTF-8."""
    keys: list[str] = []
    with contextlib.suppress(Exception):
        keys = list(tomllib_loads(data))
    run_config_file(data, keys)


# ---- (c) damaged traces and checkpoints ----------------------------------------------------------------------

#: A run stopped by an injected failure at round 30 with a checkpoint at round 20 (cr-psgd: its checkpoint holds the
#: iterate and the schedule's position), N = 3.
STOPPED = ["--backend", "local", "--workers", "3", "--samples", "500", "--features", "5", "--eval-points", "4",
           "--T", "600", "--rho", "1.05", "--checkpoint-every", "10", "--quiet"]
ROOT_ATTRS = ["N", "T", "algorithm", "bytes_per_rank", "config", "created", "data_fingerprint", "eval_time", "f_star",
              "message", "rounds_total", "run_config", "schema_version", "seed", "sfo_per_worker", "status",
              "unspent_sfo", "versions", "wall_time", "resumes"]
CHECKPOINT_ATTRS = ["evals", "format", "ledger", "monitor", "plan"]
ATTR_PLACES = {"/": ROOT_ATTRS, "checkpoint": CHECKPOINT_ATTRS, "checkpoint/algorithm/plan": ["given"],
               "checkpoint/algorithm": ["x"], "rounds": ["x"]}
JSON_ATTRS = {("/", "config"), ("/", "run_config"), ("/", "versions"), ("checkpoint", "ledger"),
              ("checkpoint", "monitor")}
ROUND_COLUMNS = ["batch_size", "bytes", "round", "sfo", "stage", "wall_time"]
EVAL_COLUMNS = ["grad_norm_sq", "loss", "round", "sfo", "suboptimality", "test_accuracy", "test_loss"]
DATASETS = (["checkpoint/rngs", "checkpoint/algorithm/x"] + [f"rounds/{c}" for c in ROUND_COLUMNS]
            + [f"evals/{c}" for c in EVAL_COLUMNS])
NODES = DATASETS + ["checkpoint", "checkpoint/algorithm", "checkpoint/algorithm/plan", "rounds", "evals", "final"]


def _attr_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Truncate:
    keep: float  # the fraction of the file's bytes kept

    def apply(self, path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * self.keep)])


@dataclass(frozen=True)
class FlipBits:
    at: tuple[float, ...]  # where, as fractions of the file's bits

    def apply(self, path: Path) -> None:
        data = bytearray(path.read_bytes())
        for a in self.at if data else ():  # an empty file has no bit to flip
            bit = min(int(a * len(data) * 8), len(data) * 8 - 1)
            data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))


@dataclass(frozen=True)
class DelAttr:
    obj: str
    name: str

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.obj in f and self.name in f[self.obj].attrs:
                del f[self.obj].attrs[self.name]


@dataclass(frozen=True)
class SetAttr:
    obj: str
    name: str
    value: object

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.obj in f:
                f[self.obj].attrs[self.name] = self.value


@dataclass(frozen=True)
class EditJson:
    """One key of a JSON attribute set to another value (or removed: value is DELETE)."""

    obj: str
    name: str
    key: str
    value: object

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.obj not in f or self.name not in f[self.obj].attrs:
                return
            raw = f[self.obj].attrs[self.name]
            try:
                doc = json.loads(_attr_text(raw))
            except ValueError:
                return
            if not isinstance(doc, dict):
                return
            keys = sorted(doc)
            key = keys[int(self.key) % len(keys)] if self.key.isdigit() and keys else self.key
            if self.value == "DELETE":
                doc.pop(key, None)
            else:
                doc[key] = self.value
            f[self.obj].attrs[self.name] = json.dumps(doc)


@dataclass(frozen=True)
class DelNode:
    node: str

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.node in f:
                del f[self.node]


@dataclass(frozen=True)
class ReplaceNode:
    """The node replaced by a dataset of another shape or type (or a group by a dataset, a dataset by a group)."""

    node: str
    kind: str

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.node not in f:
                return
            old = f[self.node]
            n = old.shape[0] if isinstance(old, h5py.Dataset) and old.shape else 3
            del f[self.node]
            values = {"scalar": np.float64(7.0), "empty": np.zeros((0,)), "2-D": np.ones((n, 2)),
                      "strings": np.array([b"abc"] * n), "longer": np.arange(n + 5, dtype=np.int64),
                      "shorter": np.arange(max(n - 1, 0), dtype=np.int64), "float32": np.ones(n, dtype=np.float32),
                      "bool": np.ones(n, dtype=bool), "complex": np.ones(n, dtype=complex)}
            if self.kind == "group":
                f.create_group(self.node)
            else:
                f[self.node] = values[self.kind]


REPLACE_KINDS = ["scalar", "empty", "2-D", "strings", "longer", "shorter", "float32", "bool", "complex", "group"]


@dataclass(frozen=True)
class Resize:
    node: str
    rows: int

    def apply(self, path: Path) -> None:
        with h5py.File(path, "r+") as f:
            if self.node in f and isinstance(f[self.node], h5py.Dataset) and f[self.node].maxshape[0] is None:
                f[self.node].resize((self.rows,) + f[self.node].shape[1:])


@dataclass(frozen=True)
class SameShape:
    """The dataset's values replaced by others of the same shape and dtype."""

    node: str
    kind: str
    seed: int

    def apply(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        with h5py.File(path, "r+") as f:
            if self.node not in f or not isinstance(f[self.node], h5py.Dataset):
                return
            ds = f[self.node]
            if ds.dtype.kind == "f":
                v = {"random": rng.normal(size=ds.shape) * 10.0 ** rng.integers(-5, 5), "nan": np.full(ds.shape, np.nan),
                     "inf": np.full(ds.shape, np.inf), "zeros": np.zeros(ds.shape), "huge": np.full(ds.shape, 1e308),
                     "negative": -np.abs(ds[()]) - 1}[self.kind]
            else:
                info = np.iinfo(ds.dtype)
                v = {"random": rng.integers(0, min(info.max, 2**62), size=ds.shape, dtype=ds.dtype),
                     "zeros": np.zeros(ds.shape, dtype=ds.dtype), "huge": np.full(ds.shape, info.max, dtype=ds.dtype),
                     "negative": np.full(ds.shape, info.min, dtype=ds.dtype),
                     "nan": np.full(ds.shape, 1, dtype=ds.dtype), "inf": np.full(ds.shape, info.max // 2, dtype=ds.dtype)
                     }[self.kind]
            ds[...] = v


SAME_SHAPE_KINDS = ["random", "nan", "inf", "zeros", "huge", "negative"]

#: Attribute values of the wrong type (or of the right type and nonsense).
attr_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=20), st.binary(max_size=20),
    st.sampled_from(["", "{}", "[]", "null", "{", '{"sfo": -1}', '{"rounds": 1e999}', "NaN", '"x"', "{]",
                     "running", "complete", "failed", "diverged", "interrupted", "paused", json.dumps({"a": [1] * 3})]),
    st.lists(st.integers(-5, 5), min_size=1, max_size=4).map(np.array),
)
json_values = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8),
                        st.lists(st.integers(-3, 3), max_size=3), st.just({"a": 1}), st.just("DELETE"))
attr_place = st.sampled_from(sorted(ATTR_PLACES)).flatmap(
    lambda o: st.tuples(st.just(o), st.sampled_from(ATTR_PLACES[o])))

structural_damage = st.one_of(
    st.builds(Truncate, st.floats(0.0, 1.0, exclude_max=True)),
    attr_place.map(lambda p: DelAttr(*p)),
    st.builds(lambda p, v: SetAttr(p[0], p[1], v), attr_place, attr_values),
    st.builds(lambda p, k, v: EditJson(p[0], p[1], k, v), st.sampled_from(sorted(JSON_ATTRS)),
              st.integers(0, 20).map(str) | st.text(max_size=4), json_values),
    st.builds(DelNode, st.sampled_from(NODES)),
    st.builds(ReplaceNode, st.sampled_from(NODES), st.sampled_from(REPLACE_KINDS)),
    st.builds(Resize, st.sampled_from([n for n in DATASETS if not n.startswith("checkpoint")]), st.integers(0, 40)),
)
value_damage = st.one_of(
    st.builds(FlipBits, st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=4).map(tuple)),
    st.builds(SameShape, st.sampled_from(DATASETS), st.sampled_from(SAME_SHAPE_KINDS), st.integers(0, 2**16)),
    st.builds(lambda p, k, v: EditJson(p[0], p[1], k, v), st.just(("checkpoint", "ledger")),
              st.sampled_from(["sfo", "rounds", "bytes", "stage", "batch", "elapsed"]), st.integers(-3, 10**6)),
    st.builds(SetAttr, st.just("checkpoint"), st.sampled_from(["evals", "plan"]), st.integers(-3, 50)),
    st.builds(SetAttr, st.just("checkpoint/algorithm/plan"), st.just("given"), st.integers(-3, 50).map(str)),
)


@dataclass(repr=False)
class StoppedRun:
    path: Path  # the stopped trace (never changed)
    reference: object  # its undamaged resume, read back
    cache: Path

    def __repr__(self) -> str:
        return "stopped_run"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:  # Hypothesis's printer
        p.text(repr(self))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The f* cache of this module's subprocesses."""
    return tmp_path_factory.mktemp("fstar-prop")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> StoppedRun:
    where = tmp_path_factory.mktemp("stopped")
    path = where / "stopped.h5"
    res = subprocess_cli([*STOPPED, "--fault", "0:30", "--out", str(path)], where, cache, timeout=120)
    assert res.code == 1, res.err
    with h5py.File(path) as f:
        assert "checkpoint" in f and f["rounds/round"].shape[0] == 30
    ref = where / "reference.h5"
    shutil.copyfile(path, ref)
    res = subprocess_cli(["--resume", str(ref)], where, cache, timeout=120)
    assert res.code == 0 and "from round 20" in res.err, res.err
    return StoppedRun(path, load_trace(ref), cache)


def same_run(got: object, want: object) -> str | None:
    """None when `got` is the run `want` is (every row, evaluation, count and the final iterate; clocks aside)."""
    if got.status != "complete":
        return f"status {got.status!r}"
    for table in ("rounds", "evals"):
        a, b = getattr(got, table), getattr(want, table)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            return f"{table}: {len(a)} rows of {list(a.columns)}, want {len(b)} of {list(b.columns)}"
        for c in a.columns:
            if c != "wall_time" and not np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True):
                return f"{table}/{c} differs"
    if got.x is None or not np.array_equal(got.x, want.x):
        return "the final iterate differs"
    for key in ("rounds_total", "sfo_per_worker", "unspent_sfo", "bytes_per_rank", "f_star"):
        if got.attrs.get(key) != want.attrs.get(key):
            return f"attribute {key}: {got.attrs.get(key)!r}, want {want.attrs.get(key)!r}"
    return None


def damaged_copy(run: StoppedRun, where: Path, damage: list[object]) -> Path:
    target = where / "t.h5"
    shutil.copyfile(run.path, target)
    for d in damage:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):  # h5py refused this edit (a file an
            # earlier damage made unreadable, a value HDF5 cannot store): the damage is what was done
            d.apply(target)
    return target


def check_resume(run: StoppedRun, damage: list[object]) -> None:
    """--resume of the damaged trace: the exact run (exit 0, the rows of an undamaged resume) or a refusal naming
    the file with the trace left byte for byte; never a hang, a traceback or another exit."""
    with tempfile.TemporaryDirectory(prefix="prop-c-") as d:
        where = Path(d)
        target = damaged_copy(run, where, damage)
        before = digest(target)
        res = subprocess_cli(["--resume", str(target)], where, run.cache, timeout=30)
        note(f"exit {res.code}; stderr: {res.err[-2000:]!r}")
        assert not res.timed_out, "no exit within the time limit (a hang)"
        assert "Traceback" not in res.err + res.out, f"a traceback:\n{res.err[-3000:]}"
        if res.code == 0 and any(ln.endswith("is complete: nothing to resume") for ln in res.lines):
            assert digest(target) == before, "a trace left alone was changed"
            assert any(isinstance(x, SetAttr) and x.name == "status" for x in damage), \
                "called complete, but only a damaged status could say so"
            return
        assert res.code in (0, 2), f"exit status {res.code}: {res.lines}"
        if res.code == 2:
            assert len(res.lines) == 1 and res.lines[0].startswith(PREFIX), res.lines
            assert repr(str(target)) in res.lines[0], f"does not name the trace: {res.lines[0]!r}"
            assert digest(target) == before, "the trace was changed by a refused resume"
            return
        why = same_run(load_trace(target), run.reference)
        assert why is None, f"exit 0 but not the run never stopped: {why}"


@pytest.mark.timeout(600)
@examples(14)
@example(damage=[DelNode("checkpoint/rngs")])
@example(damage=[SetAttr("/", "run_config", "[]")])
@example(damage=[Resize("rounds/round", 5)])
@example(damage=[Truncate(0.5)])
@example(damage=[SetAttr("checkpoint", "evals", -1)])
@example(damage=[SetAttr("checkpoint", "evals", 0)])
@example(damage=[EditJson("/", "run_config", "B1", None)])
@example(damage=[EditJson("/", "config", "L", None)])
@given(damage=st.lists(structural_damage, min_size=1, max_size=3))
def test_resume_structurally_damaged_trace(stopped_run: StoppedRun, damage: list[object]) -> None:
    """(c) Attributes and datasets deleted, of the wrong type or shape, JSON edited, the file truncated."""
    check_resume(stopped_run, damage)


@pytest.mark.timeout(600)
@examples(10)
@example(damage=[SameShape("checkpoint/rngs", "random", 0)])
@example(damage=[SetAttr("checkpoint/algorithm/plan", "given", "0")])
@given(damage=st.lists(value_damage, min_size=1, max_size=2))
def test_resume_trace_with_damaged_values(stopped_run: StoppedRun, damage: list[object]) -> None:
    """(c) Bits flipped, values replaced by others of the same shape and type: an exact resume or a refusal (a
    checkpoint that cannot tell its values were changed resumes a different run)."""
    check_resume(stopped_run, damage)


#: A process that forks one child per trace path it is given, calls load_trace there and reports what happened (as
#: JSON): a crash of the HDF5 library on a damaged file, or a hang, costs that child only.
LOADER = r"""
import json, os, sys, traceback
from crpsgd_mpi.errors import InputError
from crpsgd_mpi.trace import load_trace
for line in sys.stdin:
    path = line.rstrip("\n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            load_trace(path)
            verdict = {"raised": None}
        except BaseException as exc:
            verdict = {"raised": type(exc).__module__ + "." + type(exc).__qualname__, "own": isinstance(exc, InputError),
                       "text": str(exc)[:300], "where": traceback.format_exc(limit=-2)[-600:]}
        os.write(w, json.dumps(verdict).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    status = os.waitpid(pid, 0)[1]
    print(data.decode() if data else json.dumps({"raised": f"(the process died: wait status {status})", "own": False}),
          flush=True)
"""


class Loader:
    def __repr__(self) -> str:
        return "loader"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def load(self, path: Path, timeout: float = 30) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", LOADER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(str(path) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return {"raised": "(no answer within the time limit: a hang)", "own": False}
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def loader() -> Iterator[Loader]:
    one = Loader()
    yield one
    one.close()


@pytest.mark.timeout(300)
@examples(120)
@example(damage=[Resize("rounds/batch_size", 0)])
@example(damage=[SetAttr("/", "config", "{")])
@example(damage=[ReplaceNode("rounds", "strings")])
@example(damage=[Truncate(0.3)])
@given(damage=st.lists(structural_damage | value_damage, min_size=1, max_size=3))
def test_load_trace_of_a_damaged_file(stopped_run: StoppedRun, loader: Loader, damage: list[object]) -> None:
    """(c) load_trace reads the file or raises the package's InputError naming it; never ValueError, KeyError,
    IndexError, JSONDecodeError or OSError of its own, never a crash or a hang."""
    with tempfile.TemporaryDirectory(prefix="prop-c-") as d:
        target = damaged_copy(stopped_run, Path(d), damage)
        before = digest(target)
        verdict = loader.load(target)
        note(f"load_trace: {verdict}")
        assert verdict["raised"] is None or verdict["own"], \
            f"load_trace raised {verdict['raised']}: {verdict.get('text')!r}\n{verdict.get('where', '')}"
        if verdict["raised"] is not None:
            assert repr(str(target)) in verdict["text"], f"the error does not name the file: {verdict['text']!r}"
        assert digest(target) == before, "load_trace changed the file"


# ---- (d) damaged data files ---------------------------------------------------------------------------------

LABELS = ["1", "-1", "+1", "0", "2", "nan", "inf", "-inf", "1.5", "-0", "", "abc", "1e400", "\u0661", "0x1", "+1.0"]
INDICES = [1, 2, 3, 4, 5, 7, 13, 50, 1000, 10**9, 2**31 - 1, 2**31, 10**12, 2**63, 10**20, 0, -1]
VALUES = ["1", "0", "-1", "0.5", "1e-300", "1e80", "1e300", "1e400", "nan", "inf", "-inf", "abc", "", "1,5", "0x10",
          "\u0663", "5e-324"]


@st.composite
def libsvm_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["row", "row", "row", "row", "comment", "blank", "junk"]))
    if kind == "comment":
        return b"# " + draw(st.binary(max_size=10)).replace(b"\n", b" ") + b"\n"
    if kind == "blank":
        return draw(st.sampled_from([b"\n", b"  \n", b"\t\n", b"\r\n"]))
    if kind == "junk":
        return draw(st.binary(max_size=20)) + b"\n"
    label = draw(st.sampled_from(LABELS))
    idx = draw(st.lists(st.sampled_from(INDICES), max_size=4))
    if draw(st.booleans()):
        idx = sorted(set(idx))
    pairs = [f"{i}:{draw(st.sampled_from(VALUES))}" for i in idx]
    qid = draw(st.sampled_from(["", "", "qid:1 ", "qid:x "]))
    sep = draw(st.sampled_from([" ", " ", "\t", "  "]))
    tail = draw(st.sampled_from(["", "", " # c", " ", "\r"]))
    return (label + sep + qid + sep.join(pairs) + tail + "\n").encode()


def good_libsvm_line(draw: st.DrawFn, i: int) -> bytes:
    label = "1" if i % 2 else "-1"
    return f"{label} 1:{draw(st.floats(-3, 3)):.3f} 3:{draw(st.floats(-3, 3)):.3f}\n".encode()


@st.composite
def libsvm_files(draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["bytes", "lines", "mostly-good"]))
    if how == "bytes":
        return draw(st.binary(max_size=400))
    lines = draw(st.lists(libsvm_line(), min_size=1, max_size=8))
    if how == "mostly-good":
        lines = [good_libsvm_line(draw, i) for i in range(draw(st.integers(2, 12)))] + lines[:2]
        draw(st.randoms()).shuffle(lines)
    return b"".join(lines)


H5_DTYPES = ["f8", "f4", "f2", "i1", "i8", "u8", "bool", "complex", "S3", "str", "compound"]


def _array(shape: tuple[int, ...], dtype: str, fill: str, rng: np.random.Generator) -> np.ndarray:
    base = rng.normal(size=shape)
    if fill == "labels":
        base = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    elif fill == "01":
        base = (rng.random(shape) < 0.5).astype(float)
    elif fill != "normal":
        spots = rng.random(shape) < 0.3
        base[spots] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300, "1e74": 1e74, "tiny": 5e-324,
                       "seven": 7.0}[fill]
    if dtype == "str":
        return base.astype(str).astype(object).astype(h5py.string_dtype())
    if dtype == "compound":
        out = np.zeros(shape, dtype=[("a", "f8"), ("b", "i4")])
        out["a"] = base
        return out
    if dtype == "S3":
        return base.astype("S3")
    with np.errstate(all="ignore"):
        return base.astype(dtype) if dtype[0] not in "iu" else np.nan_to_num(base).clip(-100, 100).astype(dtype)


shapes = st.one_of(st.tuples(st.integers(0, 30), st.integers(0, 6)), st.tuples(st.integers(0, 30)), st.just(()),
                   st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(1, 3)))
fills = st.sampled_from(["normal", "normal", "nan", "inf", "-inf", "huge", "1e74", "tiny"])


@st.composite
def hdf5_specs(draw: st.DrawFn) -> dict:
    n = draw(st.integers(0, 30))
    spec = {}
    for name, fill in (("X", fills), ("y", st.sampled_from(["labels", "labels", "01", "nan", "seven", "normal"]))):
        how = draw(st.sampled_from(["right", "right", "right", "shape", "missing", "group"]))
        if how == "missing":
            continue
        shape = ((n, draw(st.integers(1, 6))) if name == "X" else (n,)) if how != "shape" else draw(shapes)
        dtype = draw(st.sampled_from(["f8", "f8", "f8"] + H5_DTYPES))
        spec[name] = "group" if how == "group" else (shape, dtype, draw(fill), draw(st.integers(0, 1000)))
    return spec


def write_hdf5(path: Path, spec: dict) -> None:
    with h5py.File(path, "w") as f:
        for name, what in spec.items():
            if what == "group":
                f.create_group(name)
            else:
                shape, dtype, fill, seed = what
                f[name] = _array(shape, dtype, fill, np.random.default_rng(seed))


DATA_ARGS = ["--backend", "local", "--workers", "2", "--T", "60", "--eval-points", "2", "--checkpoint-every", "off"]


def run_dataset(path: Path, where: Path) -> None:
    before = digest(path)
    out = where / "out" / "t.h5"
    res = in_process([*DATA_ARGS, "--dataset", str(path), "--quiet", "--out", str(out)])
    check_outcome(res, out, where, {"dataset", "workers"})
    if res.code == 2 and not res.lines[0].startswith(PREFIX + "dataset="):
        assert "more workers than samples" in res.lines[0], f"refused without naming the file: {res.lines[0]!r}"
    if res.code == 2 and res.lines[0].startswith(PREFIX + "dataset="):
        assert repr(str(path)) in res.lines[0], f"does not name the file: {res.lines[0]!r}"
    assert digest(path) == before, "the data file was changed"


@pytest.mark.timeout(300)
@examples(100)
@example(data=b"1 1:1e400\n-1 2:1\n")
@example(data=b"nan 1:1\n-1 2:1\n")
@example(data=b"1 1000000000000:1\n-1 1:2\n")
@example(data=b"1 3:1 1:2\n-1 2:1\n")
@example(data=b"1 1:0.5\x00\n-1 2:1\n")
@given(data=libsvm_files())
def test_libsvm_files(data: bytes) -> None:
    """(d) LIBSVM text: random bytes, random lines (labels, huge indices, NaN and infinite values, comments, qid)."""
    with tempfile.TemporaryDirectory(prefix="prop-d-") as d, _cwd(Path(d)):
        path = Path(d) / "d.svm"
        path.write_bytes(data)
        run_dataset(path, Path(d))


@pytest.mark.timeout(300)
@examples(100)
@example(spec={"X": ((20, 3), "f8", "nan", 0), "y": ((20,), "f8", "labels", 0)})
@example(spec={"X": ((20, 3), "f8", "huge", 0), "y": ((20,), "f8", "labels", 0)})
@example(spec={"X": ((20, 3), "complex", "normal", 0), "y": ((20,), "f8", "labels", 0)})
@example(spec={"X": "group", "y": ((20,), "f8", "labels", 0)})
@given(spec=hdf5_specs())
def test_hdf5_files(spec: dict) -> None:
    """(d) HDF5 /X and /y: wrong shapes, ranks and dtypes, missing or groups, NaN, inf, huge values, odd labels."""
    with tempfile.TemporaryDirectory(prefix="prop-d-") as d, _cwd(Path(d)):
        path = Path(d) / "d.h5"
        write_hdf5(path, spec)
        run_dataset(path, Path(d))


# ---- (e) misbehaving plug-ins -----------------------------------------------------------------------------------

ALGO_HEAD = '''
import numpy as np
from crpsgd_mpi import ALGORITHMS, Algorithm, register_algorithm

psgd = ALGORITHMS.get("psgd")
'''

SCHED_HEAD = '''
from crpsgd_mpi import SCHEDULES
from crpsgd_mpi.schedules import BatchSchedule
'''


@dataclass(frozen=True)
class Misbehaviour:
    """A plug-in that does one wrong thing; `options` select what it registers; `exits` what may follow (0 only
    where the misbehaviour leaves a correct run possible)."""

    name: str
    source: str
    options: tuple[str, ...] = ()
    exits: frozenset[int] = frozenset({1, 2, 3})


def _algo(body: str, name: str = "bad-algo", base: str = "psgd") -> str:
    return ALGO_HEAD + f'\n@register_algorithm("{name}")\nclass Bad({base}):\n    """A bad algorithm."""\n' \
        + textwrap.indent(textwrap.dedent(body), "    ")


def _sched(batch: str, from_round: int) -> str:
    return SCHED_HEAD + textwrap.dedent(f'''
        class Bad(BatchSchedule):
            """A bad schedule."""
            def batch(self, t):
                return {batch} if t >= {from_round} else t
            def describe(self):
                return "bad"

        @SCHEDULES.register("bad-sched")
        def bad(setting):
            """A bad schedule."""
            return Bad()
    ''')


ALGO = ("--algorithm", "bad-algo")
SCHED = ("--algorithm", "cr-psgd", "--schedule", "bad-sched")


def _exits(exc: str) -> frozenset[int]:
    """A plug-in that raises KeyboardInterrupt may be taken for an interruption (exit 130, in one line)."""
    return frozenset({1, 2, 3, 130}) if exc.startswith("KeyboardInterrupt") else frozenset({1, 2, 3})


def _menu() -> list[Misbehaviour]:
    """Every misbehaviour of the menu, named."""
    menu = []
    for exc in ["RuntimeError('boom')", "KeyboardInterrupt()", "MemoryError()", "RecursionError()", "GeneratorExit()",
                "type('E', (BaseException,), {})()", "SyntaxError('x')"]:
        menu.append(Misbehaviour(f"raise {exc} at import", f"raise {exc}\n", (), _exits(exc)))
    menu.append(Misbehaviour("a syntax error", "def f(:\n"))
    for arg in ["0", "1", "2", "3", "'message'", "None", "130"]:  # (os._exit could be survived by no process)
        menu.append(Misbehaviour(f"sys.exit({arg}) at import", f"import sys\nsys.exit({arg})\n"))
    for name in ["psgd", "cr-psgd", "two words", "", " x"]:
        menu.append(Misbehaviour(f"registers the algorithm name {name!r}", _algo("pass\n", name=name),
                                 ("--algorithm", "psgd")))
    for value in ["None", "np.full_like(x0, np.nan)", "np.full_like(x0, np.inf)", "np.zeros(x0.size + 1)",
                  "np.zeros((2, x0.size))", "list(x0)", "'x'", "x0.astype(complex)", "x0[:0]", "np.float64(1.0)"]:
        menu.append(Misbehaviour(f"run() returns {value}", _algo(f"""
            def run(self, workers, x0, resume=None):
                super().run(workers, x0, resume)
                return {value}
            """), ALGO))
    for exc in ["ValueError('bad')", "KeyError('k')", "SystemExit(0)", "SystemExit(5)", "KeyboardInterrupt()",
                "RecursionError()", "MemoryError()", "StopIteration()", "type('E', (BaseException,), {})()"]:
        menu.append(Misbehaviour(f"run() raises {exc}", _algo(f"""
            def run(self, workers, x0, resume=None):
                raise {exc}
            """), ALGO, _exits(exc)))
    for what in ["return None", "raise ValueError('no')", "return 5", "return cls"]:
        menu.append(Misbehaviour(f"create() does {what!r}", _algo(f"""
            @classmethod
            def create(cls, setting):
                {what}
            """), ALGO))
    for batch in ["0", "-1", "2.5", "10**18", "'3'", "None", "float('nan')"]:
        menu.append(Misbehaviour(f"run() asks workers.gradients for a batch of {batch}", _algo(f"""
            def run(self, workers, x0, resume=None):
                x = np.array(x0)
                for _ in range(3):
                    g = workers.average(workers.gradients(x, {batch}))
                    x = x - 0.1 * g
                    workers.end_round(x)
                return x
            """), ALGO))
    for batch in ["0", "-1", "-10**9", "2.5", "10**30", "float('nan')", "None", "'3'"]:
        for first in (1, 3):
            exits = frozenset({0, 1, 2, 3}) if batch == "10**30" else frozenset({1, 2, 3})  # too large: no more rounds
            menu.append(Misbehaviour(f"schedule batch(t) = {batch} from round {first}", _sched(batch, first), SCHED,
                                     exits))
    for what in ["None", "5", "'geometric'", "1/0"]:
        menu.append(Misbehaviour(f"schedule factory returns {what}", SCHED_HEAD + textwrap.dedent(f'''
            @SCHEDULES.register("bad-sched")
            def bad(setting):
                """A bad factory."""
                return {what}
            '''), SCHED))
    for what in ["return {'x': object()}", "return 5", "raise ValueError('state')",
                 "return {'x': self._x, 'n': float('nan')}", "return {'': 1}"]:
        menu.append(Misbehaviour(f"state() does {what!r}", _algo(f"""
            def state(self):
                {what}
            """), (*ALGO, "--checkpoint-every", "3"), frozenset({0, 1, 2, 3})))
    return menu


PLUGIN_MENU = _menu()


@pytest.mark.timeout(600)
@examples(16)
@example(bad=Misbehaviour("raise RuntimeError at import", "raise RuntimeError('boom')\n"))
@example(bad=Misbehaviour("sys.exit(0) at import", "import sys\nsys.exit(0)\n"))
@given(bad=st.sampled_from(PLUGIN_MENU))
def test_misbehaving_plugins(cache: Path, bad: Misbehaviour) -> None:
    """(e) A plug-in that fails at import, exits, clashes, returns nonsense or asks for impossible batches: exit 2
    (bad plug-in or input), 1 (failed) or 3 (diverged) in one line, never a traceback, never 'complete' with a bad
    result."""
    with tempfile.TemporaryDirectory(prefix="prop-e-") as d:
        where = Path(d)
        plugin, out = where / "bad_plugin.py", where / "out" / "t.h5"
        plugin.write_text(bad.source)
        before = digest(plugin)
        argv = ["--backend", "local", "--workers", "2", "--T", "200", "--samples", "300", "--features", "3",
                "--eval-points", "3", "--checkpoint-every", "off", *bad.options, "--plugin", str(plugin), "--quiet",
                "--out", str(out)]
        res = subprocess_cli(argv, where, cache, timeout=45)
        check_outcome(res, out, where, {"plugin", "algorithm", "schedule", "B1"}, set(bad.exits))
        if res.code == 2 and res.lines[0].startswith(PREFIX + "plugin="):
            assert repr(str(plugin)) in res.lines[0], res.lines[0]
        if res.code == 0:
            tr = load_trace(out)
            assert tr.x is not None and np.isfinite(tr.x).all(), "complete with a final iterate that is not finite"
            assert (tr.rounds["batch_size"] >= 1).all() and (tr.rounds["sfo"] <= 200).all(), "impossible rows"
        assert digest(plugin) == before
