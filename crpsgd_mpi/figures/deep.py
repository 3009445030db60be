"""The deep-network study (the paper's second experiment): training loss and test accuracy against epochs and against
communication rounds, the batch staircase, and a results table; reads traces only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..trace import Trace  # noqa: E402
from .plots import _save  # noqa: E402

HEADER = ["family", "run", "gamma", "rounds", "SFO/worker", "epochs", "final training loss", "final test accuracy",
          "best test accuracy", "wall time (s)"]


def epochs(tr: Trace, sfo: np.ndarray) -> np.ndarray:
    """Passes over the training set: SFO per worker x N / training samples."""
    return np.asarray(sfo, dtype=np.float64) * int(tr.attrs["N"]) / int(tr.config["n_samples"])


def deep_figure(name: str, fam: Any, groups: dict[str, list[Trace]], out: Path) -> list[Path]:
    """2 x 3 panels: training loss and test accuracy against epochs and against rounds; the batch per round."""
    fig, axes = plt.subplots(2, 3, figsize=(17, 8.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(groups) > len(colors):  # a grid: one colour per run still
        colors = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, (label, traces) in enumerate(sorted(groups.items())):
        tr, c = traces[0], colors[i % len(colors)]
        ev = tr.evals
        e, r = epochs(tr, ev["sfo"].to_numpy()), ev["round"].to_numpy()
        text = f"{label} (gamma {tr.config['gamma']:g})"
        for row, metric in enumerate(("loss", "test_accuracy")):
            axes[row, 0].plot(e, ev[metric], color=c, marker=".", label=text)
            axes[row, 1].plot(np.maximum(r, 1), ev[metric], color=c, marker=".", label=text)
        axes[0, 2].step(tr.rounds["round"].to_numpy(), tr.rounds["batch_size"].to_numpy(), where="post", color=c,
                        label=text)
        axes[1, 2].plot(epochs(tr, tr.rounds["sfo"].to_numpy()), tr.rounds["round"].to_numpy(), color=c, label=text)
    for row, ylabel in enumerate(("training loss (eval mode, on the evaluated part)", "test accuracy")):
        axes[row, 0].set(xlabel="epochs (SFO per worker x N / training samples)", ylabel=ylabel)
        axes[row, 1].set(xlabel="communication rounds", ylabel=ylabel, xscale="log")
    axes[0, 0].set_yscale("log")
    axes[0, 1].set_yscale("log")
    axes[0, 2].set(xlabel="round", ylabel="per-worker batch size", xscale="log", yscale="log")
    axes[1, 2].set(xlabel="epochs", ylabel="communication rounds so far", yscale="log")
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.3)
    axes[1, 0].legend(fontsize=8)
    any_tr = next(iter(groups.values()))[0]
    fig.suptitle(f"{fam.title}: N={any_tr.attrs['N']}, T={any_tr.attrs['T']} SFO per worker "
                 f"({float(epochs(any_tr, np.array([any_tr.attrs['T']]))[0]):.3g} epochs), seed 0")
    return _save(fig, out, name, dpi=100)


def deep_rows(fam: Any, groups: dict[str, list[Trace]]) -> list[list[str]]:
    """One row per run (seed 0): rounds, SFO, epochs, final training loss, final and best test accuracy, time."""
    rows = []
    for label, traces in sorted(groups.items()):
        tr = traces[0]
        ev = tr.evals
        sfo = int(tr.rounds["sfo"].iloc[-1]) if len(tr.rounds) else 0
        wall = float(tr.attrs.get("wall_time", math.nan)) + float(tr.attrs.get("eval_time", 0.0))
        rows.append([fam.name, label, f"{tr.config['gamma']:g}", str(len(tr.rounds)), str(sfo),
                     f"{float(epochs(tr, np.array([sfo]))[0]):.2f}", f"{ev['loss'].iloc[-1]:.4f}",
                     f"{ev['test_accuracy'].iloc[-1]:.4f}", f"{ev['test_accuracy'].max():.4f}", f"{wall:.0f}"])
    return rows
