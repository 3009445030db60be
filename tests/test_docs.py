"""The documentation's promises that hold without building it (`make docs` builds it, with warnings as errors): the
README stays a front page, and the generated reference pages say every option and every registered component."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

from conftest import REPO
from crpsgd_mpi.registry import REGISTRIES
from crpsgd_mpi.run import build_parser

DOCS = REPO / "docs"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crpsgd_docs", DOCS / "_ext" / "crpsgd_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_front_page_that_points_at_the_docs() -> None:
    readme = (REPO / "README.rst").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make docs" in readme and "mpiexec -n 10 python -m crpsgd_mpi.run" in readme
    for page in re.findall(r"``(docs/[\w/.-]+)``", readme):
        if not page.startswith("docs/_build"):  # what `make docs` writes
            assert (REPO / page).exists(), f"the README names {page}, which does not exist"


def test_option_reference_has_every_option_of_the_parser() -> None:
    parser = build_parser()
    text = _generator().options_rst(parser)
    declared = {flag for action in parser._actions for flag in action.option_strings}
    shown = {flag for line in text.splitlines() if line.startswith(".. option:: ")
             for flag in re.findall(r"(?:^|, )(-{1,2}[\w-]+)", line[len(".. option:: "):])}
    assert shown == declared
    assert "(default: 1.1)" in text.replace("\\", "")  # --rho's default, as --help prints it


def test_component_reference_has_every_registered_name() -> None:
    text = _generator().components_rst()
    for registry in REGISTRIES:
        for name in registry.names():
            assert f"* - ``{name}``" in text, f"{registry.kind} {name}"


def test_every_page_is_reachable_from_the_index() -> None:
    """Sphinx warns (an error under `make docs`) about a page in no toctree; this says which, without Sphinx."""
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.rst") if "_build" not in p.parts}
    listed = {"index"}
    for index in DOCS.rglob("index.rst"):
        folder = index.parent.relative_to(DOCS).as_posix()
        entries = re.findall(r"^   ([\w/-]+)$", index.read_text(), flags=re.MULTILINE)
        listed |= {e if folder == "." else f"{folder}/{e}" for e in entries}
    assert pages == listed
