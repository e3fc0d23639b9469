"""What support engineers read about now: sessions and jobs, nodes, recent failures.

Pure functions over the Slurm layer's typed jobs and nodes (``squeue``/``sinfo``, shared by
every viewer through :mod:`.cache`) and over the history table; the plain words for pending
reasons, queue positions, Slurm's estimates and job ends come from :mod:`workbench.waits`,
the same words the spawn page uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pandas as pd

from workbench.efficiency import Efficiency, ended_how, short_figures
from workbench.slurm.models import Job, Node
from workbench.tags import parse_job_tag
from workbench.waits import END_WORDS, describe_pending, estimated_start, queue_positions

SESSION_COLUMNS = ["user", "project", "job id", "session", "partition", "node", "GPUs",
                   "state", "why waiting", "position", "estimated start", "runtime",
                   "walltime left", "CPU use so far", "peak memory so far", "GPU use so far",
                   "last activity"]


def _minutes(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, m = divmod(seconds // 60, 60)
    return f"{h}:{m:02d}"


def sessions(jobs: Iterable[Job], activity: Mapping[str, str] | None = None,
             now: datetime | None = None, user: str | None = None,
             usage: Mapping[int, Efficiency] | None = None) -> pd.DataFrame:
    """Every active job (notebook sessions and batch jobs), one row each; ``activity``: hub
    user → last activity (ISO), ``user``: only that user's; ``usage``: running sessions'
    figures so far by job id (:func:`workbench.efficiency.so_far`), "not measured" for a
    running session without them, nothing for waiting and batch jobs."""
    now = now or datetime.now(UTC)
    jobs = list(jobs)
    positions = queue_positions(jobs)
    rows = []
    for j in jobs:
        if not j.state.is_active or (user and j.user != user):
            continue
        tag = parse_job_tag(j.comment)
        pos, waiting = positions.get(j.job_id, (0, 0))
        est = estimated_start(j, now)
        started = j.start_time if j.state.is_running and j.start_time else None
        left = ""
        if started and j.time_limit_min:
            left = _minutes((started + timedelta(minutes=j.time_limit_min) - now)
                            .total_seconds())
        figures = (short_figures((usage or {}).get(j.job_id))
                   if tag and j.state.is_running else {"cpu": "", "memory": "", "gpu": ""})
        rows.append({
            "user": j.user, "project": j.account, "job id": j.job_id,
            "session": (tag["server"] or "default") if tag else "(batch job)",
            "partition": j.partition, "node": j.nodes if j.state.is_running else "",
            "GPUs": f"{j.gpus} {j.gpu_type}".strip() if j.gpus else "0",
            "state": j.state.value,
            "why waiting": describe_pending(j.reason) if j.state.is_pending else "",
            "position": f"{pos} of {waiting}" if pos else "",
            "estimated start": f"{est:%Y-%m-%d %H:%M} UTC" if est else "",
            "runtime": _minutes((now - started).total_seconds()) if started else "",
            "walltime left": left,
            "CPU use so far": figures["cpu"], "peak memory so far": figures["memory"],
            "GPU use so far": figures["gpu"],
            "last activity": (activity or {}).get(j.user, "") if tag else "",
        })
    return pd.DataFrame(rows, columns=SESSION_COLUMNS)


NODE_COLUMNS = ["node", "state", "partitions", "GPU type", "GPUs allocated", "GPUs total",
                "CPUs idle", "problem"]


def nodes(nodes: Iterable[Node]) -> pd.DataFrame:
    """Each node: state, GPUs allocated of total, and for a drained or down one, why."""
    rows = []
    for n in nodes:
        flags = [f for f in n.flags if f not in ("",)]
        state = n.state + (f" ({', '.join(f.lower() for f in flags)})" if flags else "")
        problem = ""
        if not n.ready:
            problem = n.reason or "no reason given"
        rows.append({"node": n.name, "state": state, "partitions": ", ".join(n.partitions),
                     "GPU type": n.gpu_type, "GPUs allocated": n.gpus_used,
                     "GPUs total": n.gpus, "CPUs idle": n.idle_cpus, "problem": problem})
    return pd.DataFrame(rows, columns=NODE_COLUMNS)


def partition_gpus(nodes: Iterable[Node]) -> dict[str, int]:
    """GPUs per partition (a node in two partitions counts in both)."""
    out: dict[str, int] = {}
    for n in nodes:
        for p in n.partitions:
            out[p] = out.get(p, 0) + n.gpus
    return out


#: job ends that support wants to see: the job failed or Slurm ended it. Not a clean exit
#: (COMPLETED) and not CANCELLED, whoever cancelled (see :func:`failures`).
FAILED_STATES = ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED",
                 "DEADLINE")

FAILURE_COLUMNS = ["ended", "user", "project", "job id", "name", "partition", "node", "state",
                   "exit code", "what happened", "Slurm's reason"]


def killed_candidates(jobs: pd.DataFrame, since: datetime, limit: int = 200) -> list[int]:
    """Failed jobs since ``since`` killed by signal 9 (exit ``0:9``): without cgroups, that
    is how a job over its memory ends (``JobAcctGatherParams=OverMemoryKill``); its steps
    (:attr:`workbench.slurm.models.JobUsage.out_of_memory`) tell whether it was memory."""
    df = jobs[jobs.end.notna() & (jobs.end >= pd.Timestamp(since)) &
              (jobs.state == "FAILED") & (jobs.exit_code == "0:9")]
    return [int(j) for j in df.sort_values("end", ascending=False).job_id.head(limit)]


def failures(jobs: pd.DataFrame, since: datetime, user: str | None = None,
             limit: int = 200, out_of_memory: Iterable[int] = ()) -> pd.DataFrame:
    """Jobs that failed since ``since``, newest first (``limit`` rows at most), in support's
    words ("timed out (walltime reached)").

    Failures only: :data:`FAILED_STATES`. A CANCELLED job is never one, whoever cancelled
    it, because every cancel is someone's decision, not the job failing: the hub stops a
    session (its owner's stop button, or the idle culler through the hub's API) with
    ``scancel`` run as the session's owner (``spawners/slurmjob.py``), so sacct records
    ``CANCELLED by <owner's uid>`` for both (or a bare ``CANCELLED``: Slurm 22.05 leaves the
    requester out on some), and the two cannot be told apart in Slurm; the reconciler's
    clean-up of orphans and an operator's ``scancel`` run as root (``CANCELLED by 0``) and
    leave their own audit records. Those ends belong in the past-sessions view. A job killed
    at its memory limit is ``OUT_OF_MEMORY`` (exit code ``0:125``) and is listed; so is one
    in ``out_of_memory`` (job ids: killed over its memory where no cgroup holds it, see
    :func:`killed_candidates`), said so in "what happened"."""
    oom = set(out_of_memory)
    df = jobs[jobs.end.notna() & (jobs.end >= pd.Timestamp(since)) &
              jobs.state.isin(FAILED_STATES)]
    if user:
        df = df[df.user == user]
    df = df.sort_values("end", ascending=False).head(limit)
    out = pd.DataFrame({
        "ended": df.end.dt.strftime("%Y-%m-%d %H:%M"), "user": df.user, "project": df.account,
        "job id": df.job, "name": df.name, "partition": df.partition, "node": df.nodes,
        "state": df.state, "exit code": df.exit_code,
        "what happened": pd.Series([ended_how(s, x, r, for_support=True,
                                              out_of_memory=int(j) in oom)
                                    for j, s, x, r in zip(df.job_id, df.state, df.exit_code,
                                                          df.reason, strict=True)],
                                   index=df.index, dtype=object),
        "Slurm's reason": df.reason.where(df.reason != "None", "")})
    return out.reset_index(drop=True)[FAILURE_COLUMNS]


RECENT_COLUMNS = ["submitted", "job id", "name", "project", "partition", "node", "GPUs",
                  "state", "exit code", "ended", "how it ended"]


def recent_jobs(jobs: pd.DataFrame, user: str, since: datetime, limit: int = 100
                ) -> pd.DataFrame:
    """``user``'s jobs submitted since ``since``, newest first, with how each ended."""
    df = jobs[(jobs.user == user) & (jobs.submit >= pd.Timestamp(since))]
    df = df.sort_values("submit", ascending=False).head(limit)
    out = pd.DataFrame({
        "submitted": df.submit.dt.strftime("%Y-%m-%d %H:%M"), "job id": df.job,
        "name": df.name, "project": df.account, "partition": df.partition, "node": df.nodes,
        "GPUs": df.gpus, "state": df.state, "exit code": df.exit_code,
        "ended": df.end.dt.strftime("%Y-%m-%d %H:%M").fillna(""),
        "how it ended": df.state.map(lambda s: END_WORDS.get(s, ""))})
    return out.reset_index(drop=True)[RECENT_COLUMNS]


def failed_spawns(records) -> pd.DataFrame:
    """The spawner's ``session.submit-failed`` audit records (Slurm refused the job)."""
    rows = [{"when": r.at, "user": r.actor, "session": r.subject,
             "Slurm said": r.details.get("error", "")} for r in reversed(list(records))]
    return pd.DataFrame(rows, columns=["when", "user", "session", "Slurm said"])
