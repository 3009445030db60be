"""crpsgd_mpi: an MPI research simulator for parallel SGD with dynamic batch sizes (Yu & Jin, ICML 2019).

The Python API (imported on first use, so that `import crpsgd_mpi` stays cheap on every MPI rank):
`simulate(**options) -> Trace`, `resume(path, **options) -> Trace`, `load_trace(path) -> Trace`; `Algorithm`,
`Setting`, `Workers`, `GammaSchedule` and the registries with their decorators for plug-ins; the exceptions `InputError`,
`RunFailed`, `RunDiverged`, `RunInterrupted`.
"""

__version__ = "0.2.0"

_EXPORTS = {
    "simulate": "api", "resume": "api", "load_trace": "trace", "Trace": "trace", "Config": "config",
    "Algorithm": "algorithms.base", "Setting": "registry", "register_algorithm": "algorithms.base",
    "BatchSchedule": "schedules", "Plan": "schedules", "Workers": "workers",
    "ALGORITHMS": "registry", "SCHEDULES": "registry", "PROBLEMS": "registry", "DATASETS": "registry",
    "GAMMA_SCHEDULES": "registry", "GammaSchedule": "optim",
    "InputError": "errors", "TraceError": "errors", "RunFailed": "errors", "RunDiverged": "errors", "RunInterrupted": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
