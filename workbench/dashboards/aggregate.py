"""What managers read: pure functions over a jobs table (:mod:`.history`) and the budgets.

Every function takes the table, a :class:`~.daterange.DateRange` and ``now``, and returns a
DataFrame ready to show (column names as the page prints them). A job's GPU time counts in
the range only for the part of it that ran inside the range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from .daterange import DateRange

#: the programme of accounts that belong to none in the allocations file
OTHER = "(no programme)"


def programme_map(allocs) -> dict[str, str]:
    """Project account → programme name, from :class:`workbench.allocations.Allocations`."""
    return {p.name: prog.name for prog in allocs.programmes for p in prog.projects}


def reserved_gpus(programme) -> dict[str, int]:
    """A programme's reserved GPUs per type (the allocations model writes them as a mapping
    ``reserved``; older files as one ``Reserve``)."""
    reserved = getattr(programme, "reserved", None)
    if not reserved:
        return {}
    if isinstance(reserved, Mapping):
        return {str(t): int(n) for t, n in reserved.items()}
    return {reserved.gpu_type: int(reserved.count)}


def _seconds(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9


def run_intervals(jobs: pd.DataFrame, now: datetime) -> tuple[np.ndarray, np.ndarray]:
    """Each job's run as (start, end) in epoch seconds; a job still running ends ``now``;
    a job that never started has an empty interval."""
    if jobs.empty:
        return np.zeros(0), np.zeros(0)
    start = jobs.start.fillna(pd.Timestamp(now))
    end = jobs.end.fillna(pd.Timestamp(now))
    s, e = _seconds(start), _seconds(end)
    return s, np.maximum(e, s)


def overlap_s(jobs: pd.DataFrame, lo: datetime, hi: datetime, now: datetime) -> np.ndarray:
    """Seconds each job ran inside [lo, hi)."""
    s, e = run_intervals(jobs, now)
    return np.clip(np.minimum(e, hi.timestamp()) - np.maximum(s, lo.timestamp()), 0, None)


def with_programme(jobs: pd.DataFrame, programmes: Mapping[str, str]) -> pd.DataFrame:
    out = jobs.copy()
    out["programme"] = out.account.map(lambda a: programmes.get(a, OTHER))
    return out


def usage_by_project(jobs: pd.DataFrame, programmes: Mapping[str, str], rng: DateRange,
                     now: datetime) -> pd.DataFrame:
    """GPU-hours used inside the range per programme and project, with job counts."""
    cols = ["programme", "project", "jobs", "GPU-hours"]
    gpu_jobs = jobs[jobs.gpus > 0]
    if gpu_jobs.empty:
        return pd.DataFrame(columns=cols)
    df = with_programme(gpu_jobs, programmes)
    df["gpu_h"] = df.gpus * overlap_s(df, rng.start_time, rng.end_time, now) / 3600
    df = df[df.gpu_h > 0]
    out = (df.groupby(["programme", "account"]).agg(jobs=("job_id", "count"),
                                                    gpu_h=("gpu_h", "sum")).reset_index())
    out.columns = cols
    out["GPU-hours"] = out["GPU-hours"].round(2)
    return out.sort_values(["programme", "project"], ignore_index=True)


def budget_table(budgets: Iterable[Mapping]) -> pd.DataFrame:
    """The allocations' budgets (``ProjectBudget.as_dict()`` rows, as ``workbench allocations
    show --json`` prints them) as the page shows them."""
    rows = [{"programme": b["programme"], "project": b["project"],
             "granted GPU-hours": b["granted_gpu_hours"], "used GPU-hours": b["used_gpu_hours"],
             "left GPU-hours": b["remaining_gpu_hours"],
             "used %": round(100 * b["used_gpu_hours"] / b["granted_gpu_hours"], 1)
             if b["granted_gpu_hours"] else 0.0,
             "valid from": b.get("valid_from") or "", "valid until": b.get("valid_until") or "",
             "active": b.get("active", True), "origin": b.get("origin", "file")}
            for b in budgets]
    cols = ["programme", "project", "granted GPU-hours", "used GPU-hours", "left GPU-hours",
            "used %", "valid from", "valid until", "active", "origin"]
    return pd.DataFrame(rows, columns=cols)


def burndown(jobs: pd.DataFrame, budgets: Iterable[Mapping], rng: DateRange,
             now: datetime) -> pd.DataFrame:
    """GPU-hours left per project at the end of each day of the range, anchored on what the
    allocations report as used now (so the last point is today's "left"), beside the even
    burn of the grant over its period ("ideal")."""
    rows = []
    days = pd.date_range(rng.start_time, min(rng.end_time, pd.Timestamp(now)), freq="D",
                         inclusive="left")
    for b in budgets:
        mine = jobs[(jobs.account == b["project"]) & (jobs.gpus > 0)]
        s, e = run_intervals(mine, now)
        gpus = mine.gpus.to_numpy()
        granted, used_now = b["granted_gpu_hours"], b["used_gpu_hours"]
        vf = pd.Timestamp(b["valid_from"], tz="UTC") if b.get("valid_from") else None
        vu = (pd.Timestamp(b["valid_until"], tz="UTC") + pd.Timedelta(days=1)
              if b.get("valid_until") else None)
        for day in days:
            t = min((day + pd.Timedelta(days=1)).timestamp(), now.timestamp())
            after = float((gpus * np.clip(e - np.maximum(s, t), 0, None)).sum()) / 3600
            ideal = None
            if vf is not None and vu is not None and vu > vf:
                frac = min(max((t - vf.timestamp()) / (vu - vf).total_seconds(), 0), 1)
                ideal = round(granted * (1 - frac), 2)
            rows.append({"day": day.date(), "project": b["project"],
                         "left GPU-hours": round(granted - (used_now - after), 2),
                         "ideal left": ideal})
    return pd.DataFrame(rows, columns=["day", "project", "left GPU-hours", "ideal left"])


def utilisation(jobs: pd.DataFrame, partition_gpus: Mapping[str, int], rng: DateRange,
                now: datetime) -> pd.DataFrame:
    """GPU utilisation per partition over time: GPU-hours used / GPU-hours there were, per
    hour for ranges up to 3 days, else per day (the present bucket counts up to ``now``)."""
    freq = "h" if rng.days <= 3 else "D"
    end = min(rng.end_time, pd.Timestamp(now).to_pydatetime())
    edges = pd.date_range(rng.start_time, end, freq=freq)
    if len(edges) == 0 or edges[-1] < pd.Timestamp(end):
        edges = edges.append(pd.DatetimeIndex([pd.Timestamp(end)]))
    lo = np.array([t.timestamp() for t in edges[:-1]])
    hi = np.array([t.timestamp() for t in edges[1:]])
    rows = []
    for part, total in sorted(partition_gpus.items()):
        if not total:
            continue
        mine = jobs[(jobs.partition == part) & (jobs.gpus > 0)]
        s, e = run_intervals(mine, now)
        g = mine.gpus.to_numpy()[:, None]
        used = (g * np.clip(np.minimum(e[:, None], hi) - np.maximum(s[:, None], lo), 0, None)
                ).sum(axis=0) if len(mine) else np.zeros(len(lo))
        capacity = total * (hi - lo)
        for i, t in enumerate(edges[:-1]):
            rows.append({"time": t, "partition": part,
                         "GPU-hours used": round(float(used[i]) / 3600, 2),
                         "utilisation %": round(100 * float(used[i]) / capacity[i], 1)
                         if capacity[i] else 0.0})
    return pd.DataFrame(rows, columns=["time", "partition", "GPU-hours used", "utilisation %"])


def queue_waits(jobs: pd.DataFrame, programmes: Mapping[str, str],
                rng: DateRange) -> pd.DataFrame:
    """Wait from submit to start, median and 90th percentile in minutes, per programme and
    partition, of the jobs that started inside the range."""
    cols = ["programme", "partition", "jobs", "median wait (min)", "p90 wait (min)"]
    started = jobs[jobs.start.notna() & (jobs.start >= rng.start_time) &
                   (jobs.start < rng.end_time)]
    if started.empty:
        return pd.DataFrame(columns=cols)
    df = with_programme(started, programmes)
    df["wait"] = ((df.start - df.submit).dt.total_seconds() / 60).clip(lower=0)
    g = df.groupby(["programme", "partition"]).wait
    out = pd.DataFrame({"jobs": g.count(), "median wait (min)": g.median().round(1),
                        "p90 wait (min)": g.quantile(0.9).round(1)}).reset_index()
    return out[cols]


def reserved_share(jobs: pd.DataFrame, allocs, rng: DateRange, now: datetime) -> pd.DataFrame:
    """Per programme that reserves GPUs, per GPU type: GPU-hours its projects ran on that type
    inside the range, against what was reserved (GPUs × hours of the range up to now)."""
    cols = ["programme", "GPU type", "reserved GPUs", "reserved GPU-hours",
            "used GPU-hours", "used %"]
    end = min(rng.end_time, pd.Timestamp(now).to_pydatetime())
    hours = max((end - rng.start_time).total_seconds() / 3600, 0)
    rows = []
    for prog in allocs.programmes:
        projects = {p.name for p in prog.projects}
        for gpu_type, count in sorted(reserved_gpus(prog).items()):
            mine = jobs[jobs.account.isin(projects) & (jobs.gpu_type == gpu_type)]
            used = float((mine.gpus * overlap_s(mine, rng.start_time, end, now)).sum()) / 3600
            reserved = count * hours
            rows.append({"programme": prog.name, "GPU type": gpu_type, "reserved GPUs": count,
                         "reserved GPU-hours": round(reserved, 1),
                         "used GPU-hours": round(used, 2),
                         "used %": round(100 * used / reserved, 1) if reserved else 0.0})
    return pd.DataFrame(rows, columns=cols)
