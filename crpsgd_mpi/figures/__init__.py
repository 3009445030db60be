"""Figures and tables from traces only: curves with median and IQR over seeds, theory overlays, tables."""

from .curves import Curve, band, first_crossing, load_family_traces
from .netclock import measure_seconds_per_sfo

__all__ = ["Curve", "band", "first_crossing", "load_family_traces", "measure_seconds_per_sfo"]
