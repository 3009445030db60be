"""Two 'hosts' on this machine for multi-host MPI tests: network and UTS namespaces joined by a veth pair."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# RFC 1918 /24 for the veth pair. It exists only inside the two namespaces (neither end of the pair is ever
# in the caller's namespace), so it cannot clash with the machine's own routes or with a concurrent run.
SUBNET = "10.213.97"
STEP_TIMEOUT = 15.0  # seconds for each ip/unshare/umount call
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*
NETNS_RUN = Path("/run/netns")  # where `ip netns add NS` bind-mounts the namespace
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


class NamespacesUnavailable(RuntimeError):
    """The namespaces cannot be made here (not root, a tool missing, or the kernel refused)."""


@dataclass(frozen=True)
class Host:
    """One 'host': a network namespace (with its own /etc/hosts) and a persistent UTS namespace (its host name)."""

    name: str
    netns: str
    uts: Path
    address: str
    interface: str
    ip: str
    nsenter: str

    def enter(self) -> list[str]:
        """Argument prefix that runs a command on this host (in both its namespaces, /etc/hosts of its own)."""
        return [self.ip, "netns", "exec", self.netns, self.nsenter, f"--uts={self.uts}", "--"]

    def processes(self) -> dict[int, list[str]]:
        """pid -> argv of every process living in this host's network namespace (what `ip netns pids` finds)."""
        try:
            st = (NETNS_RUN / self.netns).stat()
        except OSError:
            return {}
        found: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ns = (entry / "ns" / "net").stat()
                if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue  # gone meanwhile, or a kernel thread
        return found


@dataclass(frozen=True)
class Hosts:
    """The two hosts, the launch agent that reaches either of them, and the folder holding the agent."""

    a: Host
    b: Host
    agent: Path
    workdir: Path

    def pids(self) -> list[int]:
        """Every process living in either host's network namespace."""
        return [pid for host in (self.a, self.b) for pid in host.processes()]

    def kill_all(self, wait: float = 5.0) -> list[int]:
        """SIGKILL every process in both hosts (ranks, daemons, agents); returns the pids that were there."""
        found = self.pids()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


def _tool(name: str) -> str:
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        raise NamespacesUnavailable(f"'{name}' not found")
    return path


def _run(argv: Sequence[str], timeout: float = STEP_TIMEOUT) -> str:
    """Run one setup/teardown command; its failure (or a hang) raises CalledProcessError/TimeoutExpired."""
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, list(argv), res.stdout, res.stderr)
    return res.stdout


def agent_script(hosts: Sequence[Host], shell_path: str = "/usr/local/bin:/usr/bin:/bin") -> str:
    """A PRRTE launch agent (`--prtemca plm_ssh_agent FILE`), used as ssh would be: `agent [-opts] HOST COMMAND...`.

    It runs COMMAND with /bin/sh inside HOST's namespaces, with a clean environment the way ssh gives one (a
    plain PATH, no virtual environment), so the remote side sees only what Open MPI itself forwards."""
    lines = [
        "#!/bin/sh",
        "# PRRTE launch agent (plm_ssh_agent) for namespace hosts: agent [ssh options] HOST COMMAND...",
        'while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done',
        'host=$1; shift',
        'case "$host" in',
    ]
    for h in hosts:
        enter = " ".join(shlex.quote(a) for a in h.enter())
        env = f"env -i PATH={shlex.quote(shell_path)} HOME=\"$HOME\" /bin/sh -c \"$*\""
        lines.append(f"  {shlex.quote(h.name)}|{h.address}) exec {enter} {env} ;;")
    lines += ['  *) echo "$0: unknown host \'$host\'" >&2; exit 255 ;;', "esac", ""]
    return "\n".join(lines)


@contextlib.contextmanager
def two_hosts(subnet: str = SUBNET) -> Iterator[Hosts]:
    """Make hosts A and B (unique names for this run), joined by a veth pair; remove all of it on exit.

    Each host: a network namespace with lo and one veth end up, /etc/netns/<ns>/hosts naming both hosts, and a
    persistent UTS namespace (bind-mounted file) whose host name is the host's. Raises NamespacesUnavailable,
    after undoing what it made, when any of that cannot be made here."""
    if os.geteuid() != 0:
        raise NamespacesUnavailable("needs root (creates network and UTS namespaces)")
    ip, nsenter, unshare, umount = (_tool(t) for t in ("ip", "nsenter", "unshare", "umount"))
    tag = f"{os.getpid() % 100000:05d}{secrets.token_hex(2)}"
    with contextlib.ExitStack() as undo:
        try:
            workdir = Path(tempfile.mkdtemp(prefix=f"crpsgd-netns-{tag}-"))
            undo.callback(shutil.rmtree, workdir, ignore_errors=True)
            made: list[Host] = []
            for side, last in (("a", 1), ("b", 2)):
                host = Host(name=f"host{side}-{tag}", netns=f"crpsgd-{tag}-{side}", uts=workdir / f"uts-{side}",
                            address=f"{subnet}.{last}", interface=f"vcr{tag}{side}"[:15], ip=ip, nsenter=nsenter)
                _run([ip, "netns", "add", host.netns])
                undo.callback(_remove_netns, host)
                made.append(host)
            a, b = made
            if not ETC_NETNS.exists():
                ETC_NETNS.mkdir()
                undo.callback(_rmdir_if_empty, ETC_NETNS)
            hosts_file = f"127.0.0.1 localhost\n::1 localhost\n{a.address} {a.name}\n{b.address} {b.name}\n"
            for h in made:
                (ETC_NETNS / h.netns).mkdir()
                undo.callback(shutil.rmtree, ETC_NETNS / h.netns, ignore_errors=True)
                (ETC_NETNS / h.netns / "hosts").write_text(hosts_file)
            # both ends are created inside the namespaces: the pair never appears in the caller's namespace
            _run([ip, "link", "add", a.interface, "netns", a.netns, "type", "veth",
                  "peer", "name", b.interface, "netns", b.netns])
            for h in made:
                _run([ip, "-n", h.netns, "addr", "add", f"{h.address}/24", "dev", h.interface])
                _run([ip, "-n", h.netns, "link", "set", "lo", "up"])
                _run([ip, "-n", h.netns, "link", "set", h.interface, "up"])
                h.uts.touch()
                _run([unshare, f"--uts={h.uts}", "hostname", h.name])
                undo.callback(_run, [umount, str(h.uts)])
            agent = workdir / "agent"
            agent.write_text(agent_script(made))
            agent.chmod(0o755)
            hosts = Hosts(a=a, b=b, agent=agent, workdir=workdir)
            _check(hosts)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            detail = getattr(e, "stderr", None) or ""
            cmd = getattr(e, "cmd", None)
            where = " ".join(map(str, cmd)) if isinstance(cmd, list) else ""
            raise NamespacesUnavailable(f"{type(e).__name__}: {where} {detail.strip() or e}".strip()) from e
        try:
            yield hosts
        finally:
            hosts.kill_all()


def _check(hosts: Hosts) -> None:
    """Each host has its own host name and resolves the other's name to its veth address."""
    for me, other in ((hosts.a, hosts.b), (hosts.b, hosts.a)):
        name = _run([*me.enter(), "hostname"]).strip()
        resolved = _run([*me.enter(), "getent", "hosts", other.name]).split()
        if name != me.name or resolved[:1] != [other.address]:
            raise NamespacesUnavailable(f"host {me.name}: hostname {name!r}, {other.name} -> {resolved}")


def _remove_netns(host: Host) -> None:
    """Kill whatever still lives in the namespace (it would keep it alive), then delete it (and its veth end)."""
    for pid in host.processes():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while host.processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    _run([host.ip, "netns", "del", host.netns])


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
