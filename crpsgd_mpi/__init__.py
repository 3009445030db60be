"""crpsgd_mpi: an MPI research simulator for parallel SGD with dynamic batch sizes (Yu & Jin, ICML 2019)."""

__version__ = "0.1.0"
