"""The live progress line reaches a real terminal: a pseudo-terminal with a size, and one without (as `script`
gives, where tqdm would draw a bar of no width and hide it below a screen of no height)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ARGS = ["-m", "crpsgd_mpi.run", "--backend", "local", "--workers", "4", "--algorithm", "psgd", "--batch-size", "1",
        "--gamma", "0.3", "--T", "40000", "--samples", "4000", "--eval-points", "6"]


def on_a_terminal(tmp_path: Path, size: tuple[int, int] | None) -> str:
    """Everything the run writes to a pseudo-terminal that is its standard output and error."""
    master, slave = pty.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    proc = subprocess.Popen([sys.executable, *ARGS, "--out", str(tmp_path / "t.h5")], stdin=slave, stdout=slave,
                            stderr=slave, cwd=tmp_path, close_fds=True)
    os.close(slave)
    out, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


@pytest.mark.parametrize("size", [(40, 120), None], ids=["sized", "no-size"])
def test_progress_line_shows_on_a_terminal(tmp_path: Path, size: tuple[int, int] | None) -> None:
    text = on_a_terminal(tmp_path, size)
    frames = [f for f in text.replace("\r\n", "\n").split("\r") if "SFO [" in f]
    assert any("round " in f and "batch 1" in f for f in frames), text[-2000:]
    assert "psgd (batch_size=1, gamma=0.3) on synthetic" in text  # the summary follows the line
