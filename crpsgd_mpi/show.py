"""`python -m crpsgd_mpi.show TRACE...`: what a trace says about its run, the full message of a failure (the
traceback of the process that failed) included; a damaged file is one line, exit 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .errors import InputError
from .outcome import EXIT_USAGE, say
from .trace import read_trace


def describe(path: str) -> str:
    """Status, settings, counts and the end message of the trace at `path`."""
    try:
        tr = read_trace(path)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line naming it
        raise InputError("trace", path, f"cannot be read: {type(exc).__name__}: {exc}") from None
    attrs, c = tr.attrs, tr.config
    lines = [f"{path}: {tr.status}",
             f"  {attrs.get('algorithm')} on {c.get('dataset_name', c.get('dataset'))}, N={attrs.get('N')}, "
             f"T={attrs.get('T')}, seed={attrs.get('seed')}, backend {c.get('backend')}",
             f"  rounds {len(tr.rounds)}, SFO per worker {int(tr.rounds['sfo'].iloc[-1]) if len(tr.rounds) else 0}, "
             f"evaluations {len(tr.evals)}"]
    message = attrs.get("message")
    if message:
        lines.append("  message:")
        lines += ["    " + line for line in str(message).splitlines()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m crpsgd_mpi.show TRACE.h5 [TRACE.h5 ...]")
        return 0 if args else EXIT_USAGE
    for path in args:
        try:
            print(describe(path))
        except InputError as exc:
            say(f"crpsgd_mpi: error: {exc}")
            return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
