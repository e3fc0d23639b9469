"""The Slurm side of the benchmarks: benchmark users, their account, their jobs, a call counter.

Everything here acts only on Unix users named ``wbbench*`` and on the Slurm account
``benchmarks`` (directly under root); the demo users and the accounts of
``cluster/allocations.yaml`` are never touched. Slurm is driven through the workbench's own
Slurm layer (:mod:`workbench.slurm`) with the real binaries, so the benchmark's own calls are
never counted by :class:`CallShim`.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from workbench import daemons
from workbench.paths import FactoryHome
from workbench.slurm import Job, SlurmClient, queries

#: the one Slurm account of the benchmarks (not in cluster/allocations.yaml)
ACCOUNT = "benchmarks"
#: every benchmark user's name starts with this
USER_PREFIX = "wbbench"
#: Slurm commands the call counter wraps
SLURM_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo", "sacct", "sacctmgr", "scontrol",
                  "sshare", "sstat")


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on (setup failed, a wait ran out); the message says why."""


@dataclass(frozen=True)
class JobShape:
    """The one job shape both spawners submit: 1 GPU on partition gpu-a100, 20 minutes."""

    partition: str = "gpu-a100"
    account: str = ACCOUNT
    gpu_type: str = "a100"
    gpus: int = 1
    cpus: int = 2
    memory: str = "2G"
    runtime: str = "00:20:00"

    def user_options(self) -> dict:
        """The spawn options of SlurmGPUSpawner (the README's spawn options contract)."""
        return {"partition": self.partition, "account": self.account, "gpus": self.gpus,
                "gpu_type": self.gpu_type, "cpus": self.cpus, "memory": self.memory,
                "runtime": self.runtime}

    def stock_traits(self) -> dict:
        """The same request as batchspawner.SlurmSpawner ``req_*`` traits. Its template has
        no ``--account`` line (``req_account`` is unused), hence ``req_options``."""
        return {"req_partition": self.partition, "req_account": self.account,
                "req_options": f"--account={self.account}",
                "req_gres": f"gpu:{self.gpu_type}:{self.gpus}", "req_nprocs": str(self.cpus),
                "req_memory": self.memory, "req_runtime": self.runtime, "req_srun": ""}


def slurm_conf() -> str:
    return os.environ.get("SLURM_CONF") or str(FactoryHome.from_env().slurm_conf)


def root_client() -> SlurmClient:
    """Slurm as root with the real binaries on $PATH (the benchmark's own, uncounted calls)."""
    return SlurmClient(slurm_conf=slurm_conf(), timeout=60)


def require_root() -> None:
    if os.geteuid() != 0:
        raise BenchmarkError("run as root: the benchmark creates users and submits as them")


# -- users and the account ------------------------------------------------------------------

def user_names(n: int) -> list[str]:
    """The first ``n`` benchmark users of a multi-user benchmark: wbbench001...."""
    return [f"{USER_PREFIX}{i:03d}" for i in range(1, n + 1)]


def _check_name(user: str) -> None:
    if not user.startswith(USER_PREFIX):
        raise BenchmarkError(f"refusing to touch {user!r}: benchmark users start with "
                             f"{USER_PREFIX!r}")


def ensure_unix_users(users: Iterable[str]) -> list[str]:
    """Create the missing Unix users (``useradd -m``); returns those created."""
    created = []
    for user in users:
        _check_name(user)
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True,
                           capture_output=True, text=True, timeout=60)
            created.append(user)
    return created


def ensure_account(slurm: SlurmClient, users: list[str]) -> list[str]:
    """The account ``benchmarks`` under root with ``users`` in it; returns the users added."""
    for user in users:
        _check_name(user)
    rows = slurm.run(queries.sacctmgr_list("association", "Account", "User", "ParentName",
                                           where=(f"account={ACCOUNT}",)))
    if not rows:
        slurm.run(queries.sacctmgr_modify("add", "account", ACCOUNT, "parent=root",
                                          "description=workbench benchmarks",
                                          "organization=benchmarks"))
    elif any(not r[1] and r[2] != "root" for r in rows):
        raise BenchmarkError(f"Slurm account {ACCOUNT} exists but not directly under root")
    members = {r[1] for r in rows if r[1]}
    missing = [u for u in users if u not in members]
    if missing:
        slurm.run(queries.sacctmgr_modify("add", "user", ",".join(missing),
                                          f"account={ACCOUNT}"))
    return missing


def ensure_benchmark_users(slurm: SlurmClient, users: list[str]) -> None:
    created = ensure_unix_users(users)
    added = ensure_account(slurm, users)
    if created or added:
        print(f"set up {len(created)} Unix user(s), {len(added)} Slurm association(s) "
              f"in account {ACCOUNT}", flush=True)


def account_job_limit(slurm: SlurmClient) -> str:
    """The account's own GrpJobs ('' when unlimited)."""
    rows = slurm.run(queries.sacctmgr_list("association", "User", "GrpJobs",
                                           where=(f"account={ACCOUNT}",)))
    return next((r[1] for r in rows if not r[0]), "")


def require_jobs_can_run(slurm: SlurmClient) -> None:
    limit = account_job_limit(slurm)
    if limit != "":
        raise BenchmarkError(
            f"account {ACCOUNT} has GrpJobs={limit}, so its jobs cannot start (is "
            "controller_load.py running, or was it killed?). If not, reset it with: "
            f"sacctmgr -i modify account {ACCOUNT} set GrpJobs=-1")


@contextmanager
def jobs_held_pending(slurm: SlurmClient):
    """While inside, every job of the account pends (GrpJobs=0, reason AssocGrpJobsLimit)."""
    slurm.run(queries.sacctmgr_modify("modify", "account", "where", f"name={ACCOUNT}", "set",
                                      "GrpJobs=0"))
    try:
        yield
    finally:
        slurm.run(queries.sacctmgr_modify("modify", "account", "where", f"name={ACCOUNT}",
                                          "set", "GrpJobs=-1"))


# -- jobs ------------------------------------------------------------------------------------

def active_jobs(slurm: SlurmClient, users: Iterable[str]) -> list[Job]:
    users = set(users)
    return [j for j in slurm.run(queries.jobs()) if j.user in users and j.state.is_active]


def others_active(slurm: SlurmClient, users: Iterable[str]) -> int:
    """How many active jobs on the cluster belong to anyone but ``users`` (noise)."""
    users = set(users)
    return sum(1 for j in slurm.run(queries.jobs()) if j.user not in users and j.state.is_active)


def cancel_jobs(slurm: SlurmClient, users: Iterable[str]) -> list[int]:
    """scancel (as root) every active job of ``users``; returns the job ids."""
    ids = [j.job_id for j in active_jobs(slurm, users)]
    if ids:
        slurm.run(SlurmClient.command("scancel", [str(i) for i in ids]))
    return ids


def wait_until(check, what: str, timeout: float):
    """The project's backoff wait (``workbench.daemons.wait_until``), failing as a
    BenchmarkError; returns ``check()``'s value."""
    try:
        return daemons.wait_until(check, what, timeout)
    except TimeoutError as e:
        raise BenchmarkError(str(e)) from None


def wait_no_jobs(slurm: SlurmClient, users: Iterable[str], timeout: float = 60) -> None:
    users = list(users)
    wait_until(lambda: not active_jobs(slurm, users), f"jobs of {users[0]}... gone", timeout)


def cleanup_jobs(slurm: SlurmClient, users: Iterable[str]) -> None:
    """Cancel what is left of ``users``' jobs and wait until the queue has none of them."""
    users = list(users)
    ids = cancel_jobs(slurm, users)
    if ids:
        print(f"cancelled leftover job(s) {ids}", flush=True)
    wait_no_jobs(slurm, users)


def partition_address(slurm: SlurmClient, partition: str) -> str:
    """The one NodeAddr of ``partition``'s nodes (node names do not resolve here)."""
    addresses = {n.address for n in slurm.run(queries.nodes()) if partition in n.partitions}
    if len(addresses) != 1:
        raise BenchmarkError(f"partition {partition} has node addresses {addresses or 'none'}; "
                             "the stock spawner needs exactly one (state_exechost_exp)")
    return addresses.pop()


def idle_gpus(slurm: SlurmClient, partition: str) -> int:
    return sum(n.gpus_idle for n in slurm.run(queries.nodes()) if partition in n.partitions)


def wait_idle_gpu(slurm: SlurmClient, partition: str, timeout: float = 300) -> int:
    return wait_until(lambda: idle_gpus(slurm, partition), f"an idle GPU in {partition}",
                      timeout)


def job_start_time(job_id: int) -> float | None:
    """When slurmctld started ``job_id`` (epoch seconds, ms resolution), from its log on the
    local cluster; None if the log does not say (best effort: squeue only knows seconds)."""
    started = re.compile(rf"^\[(\S+)\] .*(?:sched: Allocate|Started) JobId={int(job_id)} ")
    try:
        with open(FactoryHome.from_env().log / "slurmctld.log", "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 2_000_000, 0))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        found = started.match(line)
        if found:
            try:
                return datetime.fromisoformat(found[1]).timestamp()
            except ValueError:
                return None
    return None


# -- processes and ports ---------------------------------------------------------------------

def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections in TIME_WAIT do not count, as for servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU of ``pid`` and its reaped children (None if it is gone)."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[11..14]: utime, stime, cutime, cstime (proc(5) fields 14-17)
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def slurmctld_pid() -> int | None:
    try:
        return int((FactoryHome.from_env().run / "slurmctld.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -- counting Slurm calls --------------------------------------------------------------------

class CallShim:
    """A directory of wrapper scripts, one per Slurm command, that append
    ``<epoch seconds> <command> <uid>`` to a log and exec the real binary.

    Put :attr:`bindir` first in whatever resolves a spawner's Slurm commands. Users other than
    root run the wrappers (sudo -u), so the directory is world-readable and the log
    world-writable.
    """

    def __init__(self, root: Path, commands: tuple[str, ...] = SLURM_COMMANDS):
        self.bindir = root / "slurm-shim"
        self.log = root / "slurm-calls.log"
        self.commands = commands

    def install(self) -> None:
        self.bindir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.bindir.parent, 0o755)
        os.chmod(self.bindir, 0o755)
        self.log.touch()
        os.chmod(self.log, 0o666)
        for cmd in self.commands:
            real = shutil.which(cmd)
            if not real:
                continue
            script = self.bindir / cmd
            script.write_text(
                "#!/bin/bash\n"
                f'echo "$EPOCHREALTIME {cmd} $UID" >> {shlex.quote(str(self.log))}\n'
                f'exec {shlex.quote(real)} "$@"\n')
            os.chmod(script, 0o755)

    def calls(self, since: float, until: float) -> Counter:
        """Calls per command logged in [since, until) (epoch seconds)."""
        counts: Counter = Counter()
        for line in self.log.read_text().splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                stamp = float(parts[0].replace(",", "."))
            except ValueError:
                continue
            if since <= stamp < until:
                counts[parts[1]] += 1
        return counts


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit, so every ``finally`` (cleanup) runs."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


def code_version() -> str:
    """``git describe --always --dirty`` of the repository the benchmarks live in."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() or "unknown"


def run_benchmark(name: str, args, measure, report) -> int:
    """The shared ``main``: measure inside an ExitStack (cleanup always runs), then print the
    report, the wall time and the figures as JSON (to ``args.json`` when given)."""
    exit_on_signals()
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            summary = measure(args, stack)
    except BenchmarkError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    summary["code"] = code_version()
    summary["wall_s"] = round(time.monotonic() - started, 1)
    report(summary)
    print(f"\nwall time {summary['wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"figures written to {args.json}")
    else:
        print(json.dumps(summary))
    return 0

