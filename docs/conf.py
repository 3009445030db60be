"""Sphinx configuration of the crpsgd_mpi documentation: `make docs` builds it (HTML and the doctests) with
warnings as errors."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package from this checkout, installed or not
sys.path.insert(0, str(HERE / "_ext"))

from crpsgd_mpi import __version__  # noqa: E402

project = "crpsgd_mpi"
author = "the crpsgd_mpi authors"
copyright = "the crpsgd_mpi authors"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "crpsgd_docs",  # _ext/crpsgd_docs.py: the option reference and the registered components, from the code
]
exclude_patterns = ["_build", "**/_fragments"]
templates_path: list[str] = []
# `text` in a docstring is code, as the package's docstrings write it
default_role = "code"
# options are typed as written: "--rho" stays two hyphens, never an en dash
smartquotes = False

html_theme = "furo"
html_title = f"crpsgd_mpi {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# Doctests run in this process with the in-process backend: every run stays in memory (`out=None`) and f* goes to
# a cache of its own, so a docs build never writes into the user's cache or the checkout.
# The API's docstrings use the package's names as its own modules see them.
doctest_global_setup = """
import os, tempfile
os.environ.setdefault("CRPSGD_CACHE", tempfile.mkdtemp(prefix="crpsgd-docs-cache-"))
from crpsgd_mpi import load_trace, resume, simulate
"""
