"""Components own their parameters: a plug-in's parameter is an option and a TOML key like any other, checked by
one mechanism in one message form, recorded in the trace, refused when its component is not used, and a name that
clashes with a core option is refused when the plug-in registers; runs say what they are; families sweep any
option; the conformance kit passes the built-ins and the example plug-in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpijobs import ShellJob

from conftest import REPO, run_cli
from crpsgd_mpi.config import CORE_NAMES, FIELD_KINDS, Config, cli_value
from crpsgd_mpi.errors import InputError
from crpsgd_mpi.params import Param, field_kind, typed
from crpsgd_mpi.run import build_parser
from crpsgd_mpi.sweep import main as sweep
from crpsgd_mpi.testing import ConformanceError, check_algorithm, check_schedule
from crpsgd_mpi.trace import read_trace

POLY = REPO / "examples" / "plugin_polynomial_batches.py"
SMALL = ["--backend", "local", "--workers", "4", "--samples", "3000", "--features", "8", "--eval-points", "6",
         "--T", "3000"]


def batches(B1: int, power: float, T: int) -> list[int]:
    out, used, t = [], 0, 1
    while True:
        b = B1 * t ** int(power) if float(power).is_integer() else max(B1, int(B1 * t ** power))
        if used + b > T:
            return out
        out.append(b)
        used, t = used + b, t + 1


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0, 3.0])
def test_polynomial_plugin_takes_power_on_the_command_line(tmp_path: Path, power: float) -> None:
    out = tmp_path / "t.h5"
    assert run_cli(*SMALL, "--plugin", str(POLY), "--schedule", "polynomial", "--power", str(power), "--out",
                   str(out)) == 0
    tr = read_trace(out)
    assert tr.rounds["batch_size"].tolist() == batches(1, power, 3000)
    assert tr.config["power"] == power and tr.config["schedule"] == "polynomial"


def test_polynomial_plugin_from_toml_with_its_default(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(f'plugin = "{POLY}"\nschedule = "polynomial"\npower = 1.5\nB1 = 2\n')
    assert run_cli(*SMALL, "--config", str(toml), "--out", str(tmp_path / "a.h5")) == 0
    assert read_trace(tmp_path / "a.h5").rounds["batch_size"].tolist() == batches(2, 1.5, 3000)
    toml.write_text(f'plugin = "{POLY}"\nschedule = "polynomial"\n')
    assert run_cli(*SMALL, "--config", str(toml), "--out", str(tmp_path / "b.h5")) == 0
    assert read_trace(tmp_path / "b.h5").config["power"] == 2.0  # the default, recorded


@pytest.mark.parametrize("args, line", [
    (["--power", "1.5"], "power='1.5': a parameter of schedule 'polynomial', which this run does not use "
                         "(select it with --schedule polynomial)"),
    (["--schedule", "polynomial", "--power", "0"], "power=0.0: must be a number > 0 and <= 8"),
    (["--schedule", "polynomial", "--power", "\uff11"], "power='\uff11': must be a number"),
    (["--schedule", "polynomial", "--power", "nan"], "power=nan: must be a finite number > 0 and <= 8"),
    (["--schedule", "polynomial", "--power", "9"], "power=9.0: must be a number > 0 and <= 8"),
], ids=["unused-component", "zero", "fullwidth", "nan", "too-big"])
def test_bad_parameter_values_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                           line: str) -> None:
    capsys.readouterr()
    assert run_cli(*SMALL, "--plugin", str(POLY), *args, "--out", str(tmp_path / "t.h5")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"crpsgd_mpi: error: {line}"] and not (tmp_path / "t.h5").exists()


def test_toml_value_of_the_wrong_type_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(f'plugin = "{POLY}"\nschedule = "polynomial"\npower = "two"\n')
    capsys.readouterr()
    assert run_cli(*SMALL, "--config", str(toml), "--out", str(tmp_path / "t.h5")) == 2
    assert capsys.readouterr().err.splitlines() == ["crpsgd_mpi: error: power='two': must be a number"]


def test_a_parameter_named_like_a_core_option_is_refused_at_registration(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "clash.py"
    plugin.write_text(textwrap.dedent("""
        from crpsgd_mpi.params import Param
        from crpsgd_mpi.registry import SCHEDULES
        from crpsgd_mpi.schedules import Linear

        @SCHEDULES.register("clashing", params=(Param("rho", "float", 2.0, "a second rho"),))
        def clashing(setting):
            '''Clashes.'''
            return Linear(setting.cfg.B1)
    """))
    capsys.readouterr()
    assert run_cli(*SMALL, "--plugin", str(plugin), "--out", str(tmp_path / "t.h5")) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"crpsgd_mpi: error: plugin='{plugin}': failed while importing") and \
        "parameter 'rho' clashes with the core option --rho" in line


def test_param_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="identifier"):
        Param("my-power", "float", 1.0, "x")
    with pytest.raises(ValueError, match="help"):
        Param("power", "float", 1.0, " ")
    with pytest.raises(InputError, match="must be a number > 0"):
        Param("power", "float", 0.0, "x", low=0.0, low_open=True)
    with pytest.raises(ValueError, match="kind"):
        Param("power", "complex", 1.0, "x")
    assert Param("mode", "str", "a", "x", choices=("a", "b")).value("b") == "b"


def test_help_shows_a_selected_components_own_parameters() -> None:
    base = [sys.executable, "-m", "crpsgd_mpi.run", "--plugin", str(POLY)]
    text = subprocess.run([*base, "--help", "--schedule", "polynomial"], capture_output=True, text=True,
                          timeout=60).stdout
    assert "schedule polynomial (its own parameters" in text and "--power FLOAT" in text
    assert "--reduction {exact,ordered,allreduce}" in text and "--backend {auto,mpi,local}" in text
    listing = subprocess.run([*base, "--list"], capture_output=True, text=True, timeout=60).stdout
    assert "polynomial" in listing and "[--power float]" in listing and "cifar10:DIR" in listing


def test_runs_say_what_they_are(tmp_path: Path) -> None:
    """Two runs that differ only by their schedule get different default names and summaries."""
    cmd = [sys.executable, "-m", "crpsgd_mpi.run", *SMALL, "--plugin", str(POLY)]
    a = subprocess.run([*cmd, "--schedule", "polynomial", "--power", "1.5"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    b = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout.startswith("cr-psgd (schedule=polynomial, B1=1, power=1.5) on synthetic")
    assert b.stdout.startswith("cr-psgd (schedule=geometric, B1=1, rho=1.1) on synthetic")
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(names) == 2 and names[0].startswith("cr-psgd-geometric-B1_1-rho_1.1-synthetic-N4-T3000-seed0-")
    assert names[1].startswith("cr-psgd-polynomial-B1_1-power_1.5-synthetic-N4-T3000-seed0-")


def test_a_family_sweeps_a_plugin_parameter_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fam = tmp_path / "poly.toml"
    fam.write_text(textwrap.dedent(f"""
        title = "power"
        seeds = [0, 1]
        [base]
        plugin = "{POLY}"
        schedule = "polynomial"
        samples = 3000
        features = 8
        workers = 3
        T = 2000
        eval_points = 5
        [runs.cr-psgd]
        [sweep]
        power = [1.0, 2.0]
    """))
    assert sweep([str(fam), "--results", str(tmp_path / "res"), "--jobs", "1"]) == 0
    traces = {p.name: read_trace(p) for p in sorted((tmp_path / "res" / "poly").glob("*.h5"))}
    assert sorted(traces) == ["cr-psgd-power_1-seed0.h5", "cr-psgd-power_1-seed1.h5", "cr-psgd-power_2-seed0.h5",
                              "cr-psgd-power_2-seed1.h5"]
    for name, tr in traces.items():
        power = 1.0 if "power_1" in name else 2.0
        assert tr.config["power"] == power and tr.rounds["batch_size"].tolist() == batches(1, power, 2000)
        assert tr.config["seed"] == int(name[-4])
    capsys.readouterr()
    assert sweep([str(fam), "--results", str(tmp_path / "res")]) == 0
    assert "poly: 0 run(s) to do" in capsys.readouterr().out


@pytest.mark.parametrize("text, line", [
    ('[sweep]\npower = [1.0]\n[runs.a]\n', "power=1.0: a parameter of schedule 'polynomial', which this run does "
                                           "not use"),
    ('[base]\nT = 100\n[runs.a]\n[sweep]\nT = []\n', "[sweep] T: needs a non-empty list of values"),
    ('runs = 3\n', "not a family file"),
    ('colour = "red"\n[runs.a]\n', "unknown key 'colour'"),
], ids=["unused-parameter", "empty-sweep", "runs-not-a-table", "unknown-key"])
def test_bad_family_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                       line: str) -> None:
    fam = tmp_path / "bad.toml"
    fam.write_text((f'[base]\nplugin = "{POLY}"\n' if "power" in text else "") + text)
    capsys.readouterr()
    assert sweep([str(fam), "--results", str(tmp_path / "res")]) == 2
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith("crpsgd_mpi: error: ") and line in err


@pytest.mark.parametrize("kind, name, params", [
    ("schedule", "geometric", {"rho": 1.5}), ("schedule", "linear", {}),
    ("schedule", "step", {"step_every": 3}), ("schedule", "norm-test", {}),
    ("algorithm", "psgd", {"batch_size": 4, "gamma": 0.5}), ("algorithm", "local-sgd", {"gamma": 0.5}),
    ("algorithm", "catalyst", {"regularizer": "nonconvex"}),
])
def test_the_builtins_pass_the_conformance_kit(kind: str, name: str, params: dict[str, object]) -> None:
    """In process (mpiexec's equality is the next test's, and test_mpi.py's for every built-in)."""
    check = check_schedule if kind == "schedule" else check_algorithm
    report = check(name, mpi=False, **params)
    assert any("resume" in p for p in report.passed) and any("counts" in p for p in report.passed), report


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_the_kit_compares_with_mpiexec() -> None:
    report = check_schedule("geometric", rho=1.5, mpi=True)
    assert any("bit for bit" in p for p in report.passed) and not report.skipped, report


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_the_polynomial_plugin_passes_the_conformance_kit_under_both_backends() -> None:
    report = check_schedule("polynomial", plugin=str(POLY), power=1.5)
    assert len(report.passed) == 5 and not report.skipped, report


def test_the_kit_catches_a_schedule_that_lies_about_its_counts(tmp_path: Path) -> None:
    plugin = tmp_path / "liar.py"
    plugin.write_text(textwrap.dedent("""
        from crpsgd_mpi.registry import SCHEDULES
        from crpsgd_mpi.schedules import Linear

        class Liar(Linear):
            def rounds_and_sfo(self, budget):
                return 1, 1

        @SCHEDULES.register("liar")
        def liar(setting):
            '''Says one round.'''
            return Liar(setting.cfg.B1)
    """))
    with pytest.raises(ConformanceError, match="rounds_and_sfo"):
        check_schedule("liar", plugin=str(plugin), mpi=False)


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_polynomial_plugin_under_plain_mpiexec_equals_in_process(tmp_path: Path) -> None:
    out = tmp_path / "mpi.h5"
    job = ShellJob(f"mpiexec -n 4 python -m crpsgd_mpi.run --plugin {POLY} --schedule polynomial --power 1.5 "
                   f"{' '.join(SMALL[4:])} --out {out} --quiet", cwd=REPO)
    assert job.wait(150) == 0, job.output()
    assert run_cli(*SMALL, "--plugin", str(POLY), "--schedule", "polynomial", "--power", "1.5", "--out",
                   str(tmp_path / "local.h5")) == 0
    a, b = read_trace(out), read_trace(tmp_path / "local.h5")
    assert a.config["power"] == b.config["power"] == 1.5
    for c in ("round", "sfo", "batch_size", "bytes"):
        assert np.array_equal(a.rounds[c], b.rounds[c]), c
    assert np.array_equal(a.evals["loss"], b.evals["loss"]) and np.array_equal(a.x, b.x)


# ---- one typed-parsing function (params.typed) for core settings and components' parameters -----------------------

#: A core setting of each kind a parameter may declare, whose own checks never come first.
CORE_OF_KIND = {"int": "seed", "float": "lam", "bool": "quiet", "str": "device"}
PIECES = ["0", "1", "7", "42", "+", "-", ".", "e", "E308", "e400", "_", " ", "\t", "\u00a0", "nan", "inf", "-inf",
          "\u0663", "\uff11", "9" * 19, "9" * 45, str(2**63), "\x00", "yes", "no", "On", "true", "FALSE", "cpu"]
hostile_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([10**400, -(10**400), 2**63, -(2**63)]),
    st.floats(), st.sampled_from([1e19, -1e19, float(2**63), -0.0, 7.0]),
    st.lists(st.sampled_from(PIECES), max_size=4).map("".join), st.text(max_size=4),
    st.lists(st.text(max_size=2), max_size=2), st.dates(),
)


def _typed_or_error(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return "value", call()
    except InputError as exc:
        return "error", str(exc)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(CORE_OF_KIND)), value=hostile_values, from_text=st.booleans())
def test_core_settings_and_parameters_type_a_value_alike(kind: str, value: object, from_text: bool) -> None:
    """A value (TOML, API) or a command-line text of one kind: a core setting and a component's parameter of that
    kind refuse it in the same words (`typed`'s), or take the same typed value."""
    name = CORE_OF_KIND[kind]
    how, expected = _typed_or_error(lambda: typed(name, value, kind, from_text=from_text))
    param = Param(name, kind, {"int": 0, "float": 0.0, "bool": False, "str": "cpu"}[kind], "the same kind")
    by_param = _typed_or_error(lambda: param.value(value, from_text=from_text))
    by_config = _typed_or_error(lambda: Config.from_mapping({name: cli_value(name, value) if from_text else value}))
    if how == "error":
        assert by_param == by_config == ("error", expected)
        return
    assert type(expected) is {"int": int, "float": float, "bool": bool, "str": str}[kind]
    for got in (by_param[1] if by_param[0] == "value" else None,
                getattr(by_config[1], name) if by_config[0] == "value" else None):
        if got is not None:  # else refused by a range or NUL check, after typing
            assert type(got) is type(expected) and (got == expected or got != got and expected != expected)


@pytest.mark.parametrize("annotation, kind", [
    ("int", "int"), ("int | None", "int?"), ("float | None", "float?"), ("bool", "bool"), ("str | None", "str?"),
    ("tuple[str, ...]", "strs"), ("int | str", "period"),
])
def test_each_core_setting_has_a_kind_and_its_option_follows_it(annotation: str, kind: str) -> None:
    assert field_kind(annotation) == kind
    assert set(FIELD_KINDS) == CORE_NAMES
    help_text = " ".join(build_parser().format_help().split())
    for shown in ("--T INT", "--gamma X", "--workers INT", "--period H|stich|prsgd", "--quiet, --no-quiet",
                  "--plugin MODULE_OR_FILE"):
        assert shown in help_text


def test_a_kind_no_setting_has_is_refused() -> None:
    with pytest.raises(ValueError, match="no kind"):
        field_kind("dict[str, int]")
    with pytest.raises(ValueError, match="unknown kind"):
        typed("x", 1, "complex")
    assert typed("gamma", None, "float?") is None
    with pytest.raises(InputError, match="^T=None: must be given$"):
        typed("T", None, "int")
