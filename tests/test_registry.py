"""Every registry builds its components one way (a factory of one `Setting`), refuses a product of the wrong type in
one line, and asks its components the questions a run needs answered before they are built; no module outside a
component tests a built-in's name."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from crpsgd_mpi import limits
from crpsgd_mpi.algorithms import Algorithm
from crpsgd_mpi.config import Config
from crpsgd_mpi.data import Source, input_places
from crpsgd_mpi.data.base import check_source
from crpsgd_mpi.errors import InputError
from crpsgd_mpi.experiment import Run, fstar_key
from crpsgd_mpi.optim import GammaSchedule
from crpsgd_mpi.problems import Problem
from crpsgd_mpi.registry import ALGORITHMS, DATASETS, GAMMA_SCHEDULES, PROBLEMS, SCHEDULES, Registry, Setting
from crpsgd_mpi.schedules import BatchSchedule, Linear
from crpsgd_mpi.session import input_files

SMALL = Config(samples=400, features=4, T=200)


@pytest.fixture
def scratch() -> Iterator[list[tuple[Registry, str]]]:
    """Names registered by a test, removed after it."""
    added: list[tuple[Registry, str]] = []
    yield added
    for registry, name in added:
        registry._items.pop(name, None)


def _register(scratch: list[tuple[Registry, str]], registry: Registry, name: str, obj: object, **kw: object) -> None:
    registry.register(name, obj, **kw)  # type: ignore[call-overload]  # any object a test makes up
    scratch.append((registry, name))


def _builtins(registry: Registry) -> list[str]:
    """The names registered by the package itself (plug-ins that other tests imported in this process excluded)."""
    return [n for n in registry.names() if getattr(registry.get(n), "__module__", "").startswith("crpsgd_mpi.")]


@pytest.mark.timeout(60)
def test_every_builtin_builds_from_one_setting() -> None:
    setting = Setting(SMALL, 2)
    for name in _builtins(SCHEDULES):
        assert isinstance(SCHEDULES.build(name, setting), BatchSchedule), name
    for name in _builtins(GAMMA_SCHEDULES):
        cfg = Config.from_mapping({"gamma_schedule": "step", "gamma_every": 5}) if name == "step" else SMALL
        built = GAMMA_SCHEDULES.build(name, Setting(cfg))
        assert isinstance(built, GammaSchedule), name
    assert isinstance(DATASETS.build("synthetic", setting), Source)
    assert isinstance(PROBLEMS.build("logreg", setting), Problem)
    for name in _builtins(ALGORITHMS):
        assert isinstance(ALGORITHMS.build(name, Setting(SMALL, 2, L=1.0)), Algorithm), name


@pytest.mark.timeout(30)
@pytest.mark.parametrize("registry, kind", [(SCHEDULES, "BatchSchedule"), (DATASETS, "Source"),
                                            (GAMMA_SCHEDULES, "GammaSchedule")])
def test_a_product_of_the_wrong_type_is_one_line(scratch: list, registry: Registry, kind: str) -> None:
    _register(scratch, registry, "wrong", lambda setting: 5)
    with pytest.raises(InputError) as e:
        registry.build("wrong", Setting(SMALL))
    assert str(e.value) == f"{registry.field}='wrong': its factory returned int, not a {kind}"


@pytest.mark.timeout(30)
def test_a_factory_receives_the_setting_it_is_built_with(scratch: list) -> None:
    seen: list[Setting] = []
    _register(scratch, SCHEDULES, "spy", lambda setting: seen.append(setting) or Linear(setting.cfg.B1))
    built = SCHEDULES.build("spy", Setting(SMALL, 7, workers=range(2, 4)))
    assert isinstance(built, Linear) and seen[0].n_workers == 7 and list(seen[0].local_workers) == [2, 3]


@pytest.mark.timeout(60)
def test_the_memory_plan_asks_the_algorithm_for_its_largest_batch(scratch: list, monkeypatch: pytest.MonkeyPatch) -> None:
    psgd = ALGORITHMS.get("psgd")

    class Greedy(psgd):  # type: ignore[valid-type, misc]
        """Draws a huge batch (it says so)."""

        @classmethod
        def largest_batch(cls, cfg: Config, n_workers: int) -> tuple[int, str]:
            return 10**9, "T"

    _register(scratch, ALGORITHMS, "greedy", Greedy)
    monkeypatch.setenv(limits.MEMORY_ENV, str(10**9))
    source = DATASETS.build("synthetic", Setting(SMALL))
    check_source(Config(samples=400, features=4, T=200, algorithm="psgd"), source, 2, 2)
    with pytest.raises(InputError) as e:
        check_source(Config(samples=400, features=4, T=200, algorithm="greedy"), source, 2, 2)
    assert e.value.field == "T" and "batch buffers" in str(e.value)


@pytest.mark.timeout(60)
def test_a_data_sets_inputs_are_never_overwritten(scratch: list, tmp_path: Path) -> None:
    data = tmp_path / "rows.bin"
    data.write_bytes(b"x")

    def rows(setting: Setting) -> Source:
        return DATASETS.build("synthetic", setting)

    _register(scratch, DATASETS, "my-rows", rows, answers={"inputs": lambda setting: [Path(setting.argument or "")]})
    cfg = Config(dataset=f"my-rows:{data}")
    assert input_places(cfg) == [data] and data in input_files(cfg)
    assert input_places(Config()) == []
    assert input_places(Config(dataset="fashion-mnist:/somewhere")) == [Path("/somewhere")]


@pytest.mark.timeout(60)
def test_a_data_set_plans_its_own_fixed_memory(scratch: list, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(scratch, DATASETS, "vast", lambda setting: None,
              answers={"fixed_needs": lambda cfg: [limits.Need("samples", cfg.samples, 1e18, "its index")]})
    monkeypatch.setenv(limits.MEMORY_ENV, str(10**9))
    with pytest.raises(InputError) as e:
        Config(dataset="vast").validate()
    assert e.value.field == "samples" and "its index" in str(e.value)
    with pytest.raises(InputError, match="generator's blocks"):
        Config(features=10**8).validate()  # the built-in synthetic set answers the same question


@pytest.mark.timeout(60)
def test_f_star_is_asked_of_the_problem(scratch: list) -> None:
    def run_of(**settings: object) -> Run:
        return Run("f", "r", 0, {"T": 100, "samples": 400, "features": 4, "workers": 2, **settings}, Path("x.h5"))

    run = run_of()
    key = fstar_key(run)
    assert key is not None and "|l2|" in key and key.endswith("N2")
    assert fstar_key(run_of(regularizer="none")) is None
    _register(scratch, PROBLEMS, "opaque", lambda setting: PROBLEMS.build("logreg", setting))
    assert fstar_key(run_of(model="opaque")) is None
    _register(scratch, PROBLEMS, "keyed", lambda setting: PROBLEMS.build("logreg", setting),
              answers={"optimum_key": lambda setting, fingerprint: f"mine-{setting.n_workers}"})
    assert fstar_key(run_of(model="keyed")) == "mine-2"


@pytest.mark.timeout(60)
def test_the_limits_and_config_modules_import_no_component() -> None:
    code = ("import sys, crpsgd_mpi.config, crpsgd_mpi.limits; "
            "print(sorted(m for m in sys.modules if m.startswith(('crpsgd_mpi.algorithms', 'crpsgd_mpi.schedules', "
            "'crpsgd_mpi.problems', 'crpsgd_mpi.data'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


#: Modules that may name a built-in component: the ones that register it, and those that read recorded traces or
#: drive measured studies of named built-ins (the comparison's clock model, the benchmarks, the figures).
MAY_NAME = {"algorithms", "schedules.py", "optim.py", "problems", "data", "figures", "bench.py", "compare.py",
            "resume_point.py", "__main__.py"}


@pytest.mark.timeout(60)
def test_no_module_tests_a_builtin_name() -> None:
    names = {n for r in (ALGORITHMS, SCHEDULES, PROBLEMS, DATASETS, GAMMA_SCHEDULES) for n in r.names()} - {"step"}
    found = []
    for path in sorted((REPO / "crpsgd_mpi").rglob("*.py")):
        part = path.relative_to(REPO / "crpsgd_mpi").parts[0]
        if part in MAY_NAME:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    for c in ast.walk(side):
                        if isinstance(c, ast.Constant) and c.value in names:
                            found.append(f"{path.name}:{node.lineno} {c.value!r}")
    assert found == []


@pytest.mark.timeout(120)
def test_the_example_plugin_builds_from_a_setting(tmp_path: Path) -> None:
    plugin = REPO / "examples" / "plugin_polynomial_batches.py"
    assert run_cli("--backend", "local", "--workers", "2", "--samples", "400", "--features", "4", "--T", "300",
                   "--plugin", str(plugin), "--schedule", "polynomial", "--power", "1.5",
                   "--out", str(tmp_path / "t.h5")) == 0
