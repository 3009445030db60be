"""Packaging shim: metadata lives in setup.cfg; the one compiled module, the exact sum's steps, is built here.

It is optional: without a C compiler the package installs and runs the same arithmetic in numpy (same bits, slower).
Floating-point contraction is off so that no compiler fuses a multiply and an add."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("crpsgd_mpi.comm._exact", ["crpsgd_mpi/comm/_exact.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"])])
