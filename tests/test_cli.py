"""Bad input: one line naming the field and the value, exit status 2, no traceback, no trace left."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from crpsgd_mpi.config import Config
from crpsgd_mpi.errors import InputError


@pytest.mark.parametrize("args, field", [
    (["--rho", "1"], "rho"), (["--rho", "nan"], "rho"), (["--B1", "0"], "B1"), (["--T", "3", "--B1", "5"], "T"),
    (["--gamma", "-1"], "gamma"), (["--theta", "0"], "theta"), (["--lam", "0"], "lam"),
    (["--algorithm", "adam"], "algorithm"), (["--dataset", "/no/such/file"], "dataset"),
    (["--workers", "30000"], "workers"), (["--period", "weekly"], "period"), (["--eval-points", "1"], "eval_points"),
    (["--algorithm", "catalyst", "--T", "5", "--workers", "10"], "T"), (["--fault", "x"], "fault"),
])
def test_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str) -> None:
    out = tmp_path / "t.h5"
    assert run_cli("--backend", "local", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_parse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    try:  # argparse's own error exits; a value parsed by config.cli_value returns the config layer's status
        code = run_cli("--rho", "abc")
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rho" in err[0] and "abc" in err[0]


def test_existing_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.h5"
    out.write_bytes(b"precious")
    assert run_cli("--backend", "local", "--workers", "2", "--out", str(out)) == 2
    assert out.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert run_cli("--backend", "local", "--workers", "2", "--T", "100", "--out", str(out), "--overwrite") == 0


def test_toml_round_trip_and_cli_override(tmp_path: Path) -> None:
    cfg = Config(algorithm="local-sgd", T=500, period="prsgd", gamma=0.25, quiet=True)
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    assert Config.from_toml(p) == cfg
    assert Config.from_toml(p, {"T": 800}).T == 800
    p.write_text("rhoo = 2\n")
    with pytest.raises(InputError, match="rhoo"):
        Config.from_toml(p)
    p.write_text("T = 'many'\n")
    with pytest.raises(InputError, match="T='many'"):
        Config.from_toml(p)


def test_config_file_on_command_line(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('algorithm = "psgd"\nT = 50\nbatch-size = 5\nbackend = "local"\nworkers = 2\n')
    out = tmp_path / "t.h5"
    assert run_cli("--config", str(p), "--T", "40", "--out", str(out)) == 0
    from crpsgd_mpi.trace import read_trace

    tr = read_trace(out)
    assert tr.config["T"] == 40 and tr.config["batch_size"] == 5 and len(tr.rounds["round"]) == 8
