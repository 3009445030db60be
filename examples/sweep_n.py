"""Linear speed-up: CR-PSGD's final suboptimality at a fixed per-worker budget T, for N = 1 ... 16 workers."""

import numpy as np
import pandas as pd

from crpsgd_mpi import simulate

rows = []
for n in (1, 2, 4, 8, 16):
    trace = simulate(algorithm="cr-psgd", workers=n, T=2000, rho=1.05, lam=0.01, quiet=True)
    rows.append({"N": n, "rounds": len(trace.rounds), "suboptimality": trace.evals.suboptimality.iloc[-1]})
table = pd.DataFrame(rows)
slope = np.polyfit(np.log(table.N), np.log(table.suboptimality), 1)[0]
print(table.to_string(index=False))
print(f"fitted log-log slope {slope:.2f} (theory: -1, the O(1/(NT)) rate)")
