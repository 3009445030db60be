"""A plug-in batch schedule with a parameter of its own: `polynomial`, B_t = floor(B1 t^power) while the budget lasts.

Its parameter is an option like any other once the plug-in is named, on the command line or in TOML:

    python -m crpsgd_mpi.run --backend local --workers 4 --plugin examples/plugin_polynomial_batches.py \\
        --schedule polynomial --power 1.5
    mpiexec -n 4 python -m crpsgd_mpi.run --plugin examples/plugin_polynomial_batches.py --schedule polynomial

    # run.toml                                        python -m crpsgd_mpi.run --config run.toml
    plugin = "examples/plugin_polynomial_batches.py"
    schedule = "polynomial"
    power = 1.5

`--help --schedule polynomial` shows it; the trace records `power` with the other settings.
"""

from __future__ import annotations

import math

from crpsgd_mpi.params import Param
from crpsgd_mpi.registry import SCHEDULES, Setting
from crpsgd_mpi.schedules import BatchSchedule


class Polynomial(BatchSchedule):
    """B_t = floor(B1 t^power): exact integers for an integral power, else the C library's pow."""

    def __init__(self, B1: int, power: float) -> None:
        self.B1, self.power = B1, power

    def batch(self, t: int) -> int:
        if float(self.power).is_integer():
            return self.B1 * t ** int(self.power)
        return max(self.B1, math.floor(self.B1 * math.pow(t, self.power)))

    def describe(self) -> str:
        return f"polynomial: B_t = floor({self.B1} * t^{self.power:g})"


@SCHEDULES.register("polynomial", owns=("B1",), params=(
    Param("power", "float", 2.0, "exponent of the batch growth B_t = floor(B1 t^power)", low=0.0, low_open=True,
          high=8.0),
))
def polynomial(setting: Setting) -> BatchSchedule:
    """B_t = floor(B1 t^power) (--B1, --power)."""
    return Polynomial(setting.cfg.B1, setting.cfg.param("power"))
