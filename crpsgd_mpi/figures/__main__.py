"""`python -m crpsgd_mpi.figures`: every figure and the results tables, from the traces under results/; the tables
also go into the docs page that shows them (docs/results.rst), between their marker comments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..experiment import load_family
from .curves import load_family_traces
from .deep import HEADER as DEEP_HEADER
from .deep import deep_figure, deep_rows
from .netclock import measure_seconds_per_sfo
from .plots import speedup_figure, staircase_figure, study_figure, table_rows, time_figure
from .straggler_figure import straggler_figure, straggler_study, straggler_table

HEADER = ["family", "run", "rounds", "SFO/worker", "final metric", "SFO to eps", "rounds to eps",
          "time to eps, 10GbE (s)", "time to eps, IB (s)"]
#: The docs page whose tables are rewritten in place, between the marker comments below.
PAGE = Path("docs") / "results.rst"
START, END = ".. results-table-start", ".. results-table-end"
STRAGGLERS = (".. stragglers-table-start", ".. stragglers-table-end")
DEEP_NOTE = ("Seed 0. Training loss: cross-entropy in eval mode on a fixed part of the training set (eval_samples); "
             "test accuracy: the 10000 test images; wall time: rounds plus evaluations, in process, on this machine.")
STRAGGLER_NOTE = ("Modelled time to eps (s), medians over seeds, ring Allreduce on 10 Gb Ethernet, N workers of the family; "
                  "columns: the settings of figures/stragglers.png.")


def compute_cost(results: Path, d: int) -> float:
    """Seconds per SFO for d features, measured once on this machine and stored in results/compute.json."""
    path = results / "compute.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    key = str(d)
    if key not in table:
        table[key] = measure_seconds_per_sfo(d)
        path.write_text(json.dumps(table, indent=1))
    return float(table[key])


def grid(header: list[str], rows: list[list[str]]) -> str:
    """A grid table in reStructuredText."""
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head = "+" + "+".join("=" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", head]
    for r in rows:
        out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |", line]
    return "\n".join(out)


def rst_table(rows: list[list[str]], eps: dict[str, float]) -> str:
    """The results table with its notes."""
    notes = "; ".join(f"{k}: eps = {v:g}" for k, v in eps.items())
    note = f"Medians over seeds. Final metric: suboptimality (pl, schedules) or ||grad f||^2 (nonconvex). {notes}."
    return grid(HEADER, rows) + f"\n\n{note}\n"


def splice(text: str, markers: tuple[str, str], table: str) -> str:
    """`text` with what lies between the two marker lines replaced by `table` (unchanged without them)."""
    start, end = markers
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n\n{table}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.figures", description=__doc__)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--experiments", type=Path, default=Path("experiments"))
    p.add_argument("--out", type=Path, default=Path("figures"))
    p.add_argument("--page", type=Path, default=PAGE,
                   help=f"docs page whose tables are rewritten between their marker comments (default: {PAGE})")
    ns = p.parse_args(argv)
    rows, eps, made, pl, deep = [], {}, [], [], []
    stairs = {}
    for fpath in sorted(ns.experiments.glob("*.toml")):
        if fpath.stem == "example":
            continue
        fam = load_family(fpath)
        groups = load_family_traces(ns.results / fam.name)
        if not groups:
            print(f"{fam.name}: no complete traces, skipped", file=sys.stderr)
            continue
        if fam.study == "deep":
            made += deep_figure(fam.name, fam, groups, ns.out)
            deep += deep_rows(fam, groups)
            continue
        d = int(next(iter(groups.values()))[0].config["n_features"])
        spsfo = compute_cost(ns.results, d)
        if fam.study == "speedup":
            paths, slope = speedup_figure(fam.name, fam, groups, ns.out)
            made += paths
            print(f"{fam.name}: fitted log-log slope of final suboptimality vs N: {slope:.3f}")
            continue
        made += study_figure(fam.name, fam, groups, ns.out)
        made += time_figure(fam.name + "_time", fam, groups, ns.out, spsfo)
        rows += table_rows(fam, groups, spsfo)
        if fam.study == "pl":
            pl.append((fam, groups, spsfo))
        eps[fam.name] = fam.epsilon
        for label in ("cr-psgd", "catalyst"):
            if label in groups and fam.name.endswith("synthetic"):
                stairs.setdefault(label, groups[label][0])
    if stairs:
        first = next(iter(stairs.values()))
        made += staircase_figure("staircase", stairs, ns.out, dataset=str(first.config.get("dataset_name", "")))
    ns.out.mkdir(parents=True, exist_ok=True)
    sections = []
    if rows:  # a run of the deep families alone leaves the logistic-regression table as it is
        table = rst_table(rows, eps)
        (ns.out / "results.rst").write_text(table)
        sections.append(((START, END), table))
    if deep:
        dtable = grid(DEEP_HEADER, deep) + f"\n\n{DEEP_NOTE}\n"
        (ns.out / "deep_results.rst").write_text(dtable)  # the docs' deep table is a hand-picked part of it
    if pl:
        blocks = straggler_study(pl)
        made += straggler_figure("stragglers", blocks, ns.out)
        stable = grid(*straggler_table(blocks)) + f"\n\n{STRAGGLER_NOTE}\n"
        (ns.out / "stragglers.rst").write_text(stable)
        sections.append((STRAGGLERS, stable))
    if ns.page.exists():
        text = ns.page.read_text()
        for markers, tbl in sections:
            text = splice(text, markers, tbl)
        ns.page.write_text(text)
    print(f"wrote {len(made)} figure files and the tables in {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
