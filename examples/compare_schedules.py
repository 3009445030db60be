"""The batch schedules of the field at one SFO budget: geometric (Algorithm 1), linear, step and the norm test."""

import pandas as pd

from crpsgd_mpi import simulate

schedules = {"geometric": dict(rho=1.05), "linear": dict(B1=1), "step": dict(step_factor=2, step_every=20),
             "norm-test": dict(norm_theta=0.5)}
rows = []
for name, options in schedules.items():
    trace = simulate(algorithm="cr-psgd", schedule=name, workers=10, T=10_000, lam=0.01, quiet=True, **options)
    rows.append({"schedule": name, "rounds": len(trace.rounds), "SFO": trace.rounds.sfo.iloc[-1],
                 "last batch": trace.rounds.batch_size.iloc[-1], "MB sent": trace.rounds.bytes.sum() / 1e6,
                 "suboptimality": trace.evals.suboptimality.iloc[-1]})
print(pd.DataFrame(rows).to_string(index=False))
