"""The Python API: simulate(**options) -> Trace (in memory or on disk), load_trace, typed exceptions, and a caller's
signal handlers left as they were."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from crpsgd_mpi import InputError, RunDiverged, RunFailed, RunInterrupted, Trace, load_trace, simulate
from crpsgd_mpi.registry import ALGORITHMS

SMALL = dict(samples=2000, features=6, T=500, workers=3, eval_points=5, quiet=True)


def test_simulate_keeps_the_trace_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    tr = simulate(**SMALL)
    assert isinstance(tr, Trace) and tr.path is None and tr.status == "complete"
    assert isinstance(tr.rounds, pd.DataFrame) and isinstance(tr.evals, pd.DataFrame)
    assert list(tr.rounds.columns) == ["batch_size", "bytes", "gamma", "round", "sfo", "stage", "wall_time"]
    assert tr.attrs["config"]["workers"] == 3 and tr.config["gamma"] > 0 and isinstance(tr.attrs["versions"], dict)
    assert tr.x is not None and tr.x.shape == (7,)
    assert list(tmp_path.iterdir()) == []  # nothing written where the user is


def test_simulate_equals_the_command_line_bit_for_bit(tmp_path: Path) -> None:
    tr = simulate(**SMALL, out=str(tmp_path / "api.h5"))
    assert tr.path == tmp_path / "api.h5"
    assert run_cli("--samples", "2000", "--features", "6", "--T", "500", "--workers", "3", "--eval-points", "5",
                   "--backend", "local", "--out", str(tmp_path / "cli.h5")) == 0
    cli = load_trace(tmp_path / "cli.h5")
    pd.testing.assert_frame_equal(tr.evals, cli.evals)
    pd.testing.assert_frame_equal(tr.rounds.drop(columns="wall_time"), cli.rounds.drop(columns="wall_time"))
    assert np.array_equal(tr.x, cli.x)


def test_bad_options_raise_input_error_naming_the_field() -> None:
    with pytest.raises(InputError) as e:
        simulate(rho=0.5)
    assert e.value.field == "rho"
    with pytest.raises(InputError) as e:
        simulate(rhoo=2)
    assert e.value.field == "rhoo"
    with pytest.raises(InputError) as e:
        simulate(algorithm="adam")
    assert e.value.field == "algorithm" and "cr-psgd" in str(e.value)  # the message lists what is registered


def test_divergence_raises_with_the_trace() -> None:
    with pytest.raises(RunDiverged) as e:
        simulate(**SMALL, gamma=1e6, algorithm="psgd")
    assert e.value.status == "diverged" and e.value.exit_code == 3
    assert e.value.trace is not None and e.value.trace.status == "diverged"


def test_failure_raises_with_the_trace() -> None:
    with pytest.raises(RunFailed) as e:
        simulate(**SMALL, algorithm="psgd", fault="1:5")
    assert e.value.status == "failed" and "fault injected" in e.value.trace.attrs["message"]
    assert len(e.value.trace.rounds) >= 5


class _Interrupting:
    """Sends SIGINT to this process in its third round."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def run(self, workers: object, x0: np.ndarray) -> np.ndarray:
        hook = workers.on_round  # type: ignore[attr-defined]

        def on_round(x: np.ndarray, stage_end: bool) -> None:
            hook(x, stage_end)
            if workers.ledger.rounds == 3:  # type: ignore[attr-defined]
                os.kill(os.getpid(), signal.SIGINT)

        workers.on_round = on_round  # type: ignore[attr-defined]
        return self.inner.run(workers, x0)  # type: ignore[attr-defined]

    def constants(self) -> dict[str, object]:
        return self.inner.constants()  # type: ignore[attr-defined]


def test_sigint_raises_run_interrupted_and_restores_the_callers_handlers() -> None:
    psgd = ALGORITHMS.get("psgd")

    class Interrupted(psgd):  # type: ignore[misc, valid-type]
        """PSGD that interrupts itself."""

        @classmethod
        def create(cls, setting: object) -> object:
            return _Interrupting(psgd.create(setting))

    ALGORITHMS.register("test-interrupting", Interrupted, replace=True)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RunInterrupted) as e:
        simulate(**SMALL, algorithm="test-interrupting")
    assert e.value.exit_code == 130 and e.value.trace.status == "interrupted"
    assert isinstance(e.value, KeyboardInterrupt)  # a notebook's Ctrl-C habits still apply
    assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == before


def test_load_trace_refuses_what_is_not_a_trace(tmp_path: Path) -> None:
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(InputError) as e:
        load_trace(junk)
    assert e.value.field == "trace" and str(junk) in str(e.value)
