"""The Slurm commands the workbench runs, each a :class:`~workbench.slurm.client.Query`.

Run one with ``client.run(q)`` or ``await client.arun(q)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime

from . import parse
from .client import Query
from .models import (
    AccountedJob,
    Association,
    GpuUse,
    Job,
    JobState,
    JobUsage,
    LiveUsage,
    Node,
    Partition,
)

#: the ``sacct`` fields :func:`history` reads, in order (nothing else is asked for)
HISTORY_FIELDS = ("JobIDRaw", "JobID", "JobName", "User", "Account", "Partition", "State",
                  "ExitCode", "Reason", "Submit", "Start", "End", "ElapsedRaw", "AllocTRES",
                  "NodeList")

#: the ``sacct`` fields :func:`efficiency` reads, in order: what ``seff`` reads (elapsed,
#: CPU time, CPUs, memory asked for and the steps' peak RSS) and how the job ended
EFFICIENCY_FIELDS = ("JobIDRaw", "JobID", "JobName", "User", "Account", "Partition", "State",
                     "ExitCode", "Reason", "Start", "End", "ElapsedRaw", "TotalCPU",
                     "AllocCPUS", "NNodes", "ReqMem", "MaxRSS", "AllocTRES", "NodeList")


def jobs() -> Query[list[Job]]:
    """Every job the controller knows (one call for all users and sessions)."""
    return Query("squeue", ("--json",), parse.parse_jobs)


def nodes() -> Query[list[Node]]:
    return Query("sinfo", ("--json",), parse.parse_nodes)


def partitions() -> Query[list[Partition]]:
    """Partitions with their limits; node names are filled in by :func:`cluster_view`."""
    return Query("scontrol", ("show", "partition", "-o"), parse.parse_partitions)


def cluster_name() -> Query[str]:
    """The cluster's ``ClusterName`` (``scontrol show config``): the accounts' cluster."""
    return Query("scontrol", ("show", "config"), parse.parse_cluster_name)


def reconfigure() -> Query[str]:
    """``scontrol reconfigure``: slurmctld and every slurmd re-read slurm.conf."""
    return Query("scontrol", ("reconfigure",), str)


def ping() -> Query[str]:
    return Query("scontrol", ("ping",), str)


def resume_node(name: str) -> Query[str]:
    return Query("scontrol", ("update", f"nodename={name}", "state=resume"), str)


def submit(script: str, as_user: str, env: Mapping[str, str] | None = None) -> Query[int]:
    """``sbatch --parsable`` as ``as_user`` with the script on stdin; returns the job id.

    ``env`` reaches sbatch through the environment (sudo --preserve-env), never argv.
    """
    return Query("sbatch", ("--parsable",), parse.parse_job_id, as_user=as_user,
                 input=script, env=dict(env or {}))


def cancel(job_id: int, as_user: str | None = None) -> Query[str]:
    return Query("scancel", (str(int(job_id)),), str, as_user=as_user)


def associations(user: str | None = None) -> Query[list[Association]]:
    """User associations (``user=None``: all of them, accounts' own rows included)."""
    args = ["-nP", "show", "associations"]
    if user:
        args += ["where", f"user={user}"]
    args.append("format=Account,User,ParentName,GrpTRESMins")
    return Query("sacctmgr", tuple(args), parse.parse_associations)


def user_accounts(user: str) -> Query[list[Association]]:
    """The accounts ``user`` may submit to, from slurmctld's association cache (what it
    enforces, answered without a slurmdbd round trip: ~5 ms against ~170 ms for sacctmgr)."""
    return Query("scontrol", ("-o", "show", "assoc_mgr", f"users={user}", "flags=assoc"),
                 parse.parse_assoc_mgr)


def account_tree(cluster: str) -> Query[list[Association]]:
    """Every association of ``cluster`` (accounts' own rows have ``user == ""``) with its
    limits and QOS: what :mod:`workbench.allocations.slurmsync` compares with the file."""
    return Query("sacctmgr", ("-nP", "show", "associations", "where", f"cluster={cluster}",
                              "format=Account,User,ParentName,GrpTRESMins,QOS,DefaultQOS,"
                              "GrpTRES"), parse.parse_associations)


def sacctmgr_list(entity: str, *fields: str, where: tuple[str, ...] = ()) -> Query[list[list[str]]]:
    """Rows of ``sacctmgr -nP show ENTITY [where k=v ...] format=FIELDS``."""
    args = ["-nP", "show", entity]
    if where:
        args += ["where", *where]
    args.append("format=" + ",".join(fields))
    return Query("sacctmgr", tuple(args), parse.parse_rows)


def sacctmgr_modify(action: str, entity: str, *args: str) -> Query[str]:
    """``sacctmgr -i add|modify|delete ...`` (no prompt)."""
    return Query("sacctmgr", ("-i", action, entity, *args), str)


def job_end(job_id: int) -> Query[tuple[JobState, str] | None]:
    """How a job ended, from accounting (squeue forgets jobs after MinJobAge):
    ``(state, "exit:signal")`` or None if accounting does not know it yet."""
    return Query("sacct", ("-nP", "-X", "-j", str(int(job_id)), "--format=State,ExitCode"),
                 parse.parse_job_end)


def gpu_usage(accounts: list[str], since: date) -> Query[list[GpuUse]]:
    """GPU use of every job of ``accounts`` started since ``since`` (all users)."""
    return Query("sacct", ("-a", "-nP", "-X", "-A", ",".join(accounts),
                           "-S", since.isoformat(), "-E", "now",
                           "--format=JobID,Account,User,AllocTRES,ElapsedRaw,Start"),
                 parse.parse_gpu_use)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def history(start: datetime, end: datetime | None = None) -> Query[list[AccountedJob]]:
    """Every job allocation (``-X``) of every user (``-a``) active between ``start`` and
    ``end`` (None: now), only :data:`HISTORY_FIELDS`; times in and out in UTC."""
    return Query("sacct", ("-a", "-X", "-nP", "-S", _utc(start), "-E", _utc(end) if end
                           else "now", "--format=" + ",".join(HISTORY_FIELDS)),
                 parse.parse_accounted_jobs, env={"TZ": "UTC"})


def enforced_usage(account: str) -> Query[dict[str, int]]:
    """TRES-minutes Slurm counts against ``account``'s GrpTRESMins (``sshare`` GrpTRESRaw)."""
    return Query("sshare", ("-nP", "-A", account, "-o", "Account,User,GrpTRESRaw"),
                 parse.parse_share_usage)


def set_time_limit(job_id: int, minutes: int) -> Query[str]:
    """``scontrol update JobId=N TimeLimit=...`` (an operator's command: run as root)."""
    return Query("scontrol", ("update", f"JobId={int(job_id)}",
                              f"TimeLimit={parse.format_duration(int(minutes))}"), str)


def set_admin_comment(job_id: int, text: str) -> Query[str]:
    """``scontrol update JobId=N AdminComment=...`` (an operator's field, root only; users
    cannot change it, and it does not touch the job's comment, where the workbench tag is).
    ``sacct -o AdminComment`` shows it after the job."""
    if any(c in text for c in "\n\r\t") or len(text) > 1024:
        raise ValueError("an admin comment is one line of at most 1024 characters")
    return Query("scontrol", ("update", f"JobId={int(job_id)}", f"AdminComment={text}"), str)


def efficiency(job_ids: Iterable[int]) -> Query[list[JobUsage]]:
    """What each of ``job_ids`` held and used (``seff``'s figures), its steps included (their
    ``MaxRSS``: sacct records memory per step), only :data:`EFFICIENCY_FIELDS`; times in UTC.
    With ``-j`` sacct looks back to the epoch, so old jobs are found."""
    ids = ",".join(str(int(j)) for j in job_ids)
    if not ids:
        raise ValueError("efficiency() needs at least one job id")
    return Query("sacct", ("-a", "-nP", "-j", ids, "--format=" + ",".join(EFFICIENCY_FIELDS)),
                 parse.parse_job_usage, env={"TZ": "UTC"})


def user_efficiency(user: str, start: datetime, end: datetime | None = None
                    ) -> Query[list[JobUsage]]:
    """:func:`efficiency` of every job of ``user`` active between ``start`` and ``end``
    (None: now): the past-sessions list's one call."""
    return Query("sacct", ("-nP", "-u", user, "-S", _utc(start), "-E",
                           _utc(end) if end else "now",
                           "--format=" + ",".join(EFFICIENCY_FIELDS)),
                 parse.parse_job_usage, env={"TZ": "UTC"})


#: the ``sstat`` fields :func:`live_usage` reads: each running step's CPU time and peak RSS
LIVE_USAGE_FIELDS = ("JobID", "TresUsageInTot", "MaxRSS")


def live_usage(job_ids: Iterable[int]) -> Query[dict[int, LiveUsage]]:
    """What each running job of ``job_ids`` has used so far, from ``sstat`` (every running
    step, ``-a``; sizes in bytes, ``--noconvert``): one call for all of them. sstat asks
    each job's node, not accounting, so the figures are those of the steps' last poll
    (``JobAcctGatherFrequency``, and each sstat). A job that is not running is left out of
    the answer (sstat says so on stderr and still exits 0). Run it as root or as the jobs'
    owner: others' jobs are refused."""
    ids = ",".join(str(int(j)) for j in job_ids)
    if not ids:
        raise ValueError("live_usage() needs at least one job id")
    return Query("sstat", ("-a", "-nP", "--noconvert", "-j", ids,
                           "--format=" + ",".join(LIVE_USAGE_FIELDS)), parse.parse_live_usage)
