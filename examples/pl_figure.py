"""The paper's PL experiment in a few lines: CR-PSGD against fixed-batch PSGD on equal SFO budgets, N = 10."""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crpsgd_mpi import simulate  # noqa: E402

runs = {"CR-PSGD, rho = 1.05": dict(algorithm="cr-psgd", rho=1.05),
        "PSGD, B = 1": dict(algorithm="psgd", batch_size=1, gamma=0.3),
        "PSGD, B = 256": dict(algorithm="psgd", batch_size=256)}
fig, (by_sfo, by_rounds) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for label, options in runs.items():
    trace = simulate(workers=10, T=10_000, lam=0.01, quiet=True, **options)
    ev = trace.evals[trace.evals.sfo > 0]
    by_sfo.loglog(ev.sfo, ev.suboptimality, label=label)
    by_rounds.loglog(ev["round"], ev.suboptimality, label=label)
    print(f"{label:20s} rounds {len(trace.rounds):6d}   final suboptimality {ev.suboptimality.iloc[-1]:.2e}")
by_sfo.set(xlabel="SFO per worker", ylabel="f(x) - f*", title="same SFO curve ...")
by_rounds.set(xlabel="communication rounds", title="... far fewer rounds")
by_sfo.legend()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "pl_figure.png", dpi=100, bbox_inches="tight")
