"""`python -m crpsgd_mpi.figures`: every figure and the results tables, from the traces under results/; the tables
also go into the docs page that shows them (docs/results.rst), between their marker comments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..experiment import load_family
from ..trace import Trace
from .curves import load_family_traces
from .deep import DONE as DEEP_DONE
from .deep import HEADER as DEEP_HEADER
from .deep import PARTIAL as DEEP_PARTIAL
from .deep import deep_figure, deep_rows, deep_verdict, grid_report
from .netclock import measure_seconds_per_sfo
from .plots import speedup_figure, staircase_figure, study_figure, table_rows, time_figure
from .straggler_figure import straggler_figure, straggler_study, straggler_table

HEADER = ["family", "run", "rounds", "SFO/worker", "final metric", "SFO to eps", "rounds to eps",
          "time to eps, 10GbE (s)", "time to eps, IB (s)"]
#: The docs page whose tables are rewritten in place, between the marker comments below.
PAGE = Path("docs") / "results.rst"
START, END = ".. results-table-start", ".. results-table-end"
STRAGGLERS = (".. stragglers-table-start", ".. stragglers-table-end")
DEEP = (".. deep-table-start", ".. deep-table-end")
DEEP_NOTE = ("Medians over seeds, and with several seeds their range (min-max) in brackets. A family with a step-size "
             "grid (a [sweep]): each method at its lowest final training loss (CR-PSGD's rho x B1 variants compete as "
             "one method). Training loss: cross-entropy in eval mode on a fixed part of the training set "
             "(eval_samples); test accuracy: final (at the last evaluation) and best (over the evaluations), on the "
             "family's test_samples test images; wall time: rounds plus evaluations, in process, on this machine; "
             "evaluation share: the evaluations' part of it.")
VERDICT_NOTE = ("Verdict (computed from the traces): does each growing-batch run reach PSGD B=16's final test accuracy "
                "within 1 point (first crossing, interpolated between evaluations, for more than half of its seeds) "
                "with at least 10x fewer rounds than PSGD B=16 needs to reach the same level, and at what SFO per "
                "worker.")
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


def deep_table(rows: list[list[str]], verdicts: list[str]) -> str:
    """The deep study's table, its note and the verdict lines under it (a bullet list)."""
    text = grid(DEEP_HEADER, rows) + f"\n\n{DEEP_NOTE}\n"
    if verdicts:
        text += f"\n{VERDICT_NOTE}\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crpsgd_mpi.figures", description=__doc__)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--experiments", type=Path, default=Path("experiments"))
    p.add_argument("--out", type=Path, default=Path("figures"))
    p.add_argument("--page", type=Path, default=PAGE,
                   help=f"docs page whose tables are rewritten between their marker comments (default: {PAGE})")
    p.add_argument("--partial", action="store_true",
                   help="deep families: also draw (and tabulate, marked 'partial') the traces still running or stopped, "
                   "to look at a study in progress; the docs page is then left as it is")
    ns = p.parse_args(argv)
    rows, made, pl, deep, verdicts = [], [], [], [], []
    eps: dict[str, float] = {}
    stairs: dict[str, Trace] = {}
    for fpath in sorted(ns.experiments.glob("*.toml")):
        if fpath.stem == "example":
            continue
        fam = load_family(fpath)
        statuses = (DEEP_DONE + (DEEP_PARTIAL if ns.partial else ())) if fam.study == "deep" else ("complete",)
        groups = load_family_traces(ns.results / fam.name, statuses)
        if not groups:
            print(f"{fam.name}: no complete traces, skipped", file=sys.stderr)
            continue
        if fam.study == "deep":
            made += deep_figure(fam.name, fam, groups, ns.out)
            deep += deep_rows(fam, groups)
            verdicts += deep_verdict(fam, groups)
            if fam.sweep:
                print(grid_report(fam, groups))
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
        if fam.epsilon is None:  # not reached: table_rows compared the metric with it, a TypeError
            raise TypeError(f"family {fam.name}: the results table needs its epsilon")
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
        dtable = deep_table(deep, verdicts)
        (ns.out / "deep_results.rst").write_text(dtable)
        print("\n".join(verdicts))
        if not ns.partial:
            sections.append((DEEP, dtable))
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
