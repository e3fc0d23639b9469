"""What is granted, used and left: per project (GPU-hours, from ``sacct``) and per programme
(its share of the machine in the period, its grants against it, its reserved GPUs now)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..slurm import SlurmClient, queries
from ..slurm.models import GpuUse, Job, Node
from .guards import plan_guards
from .model import Allocations, gpu_totals, machine_gpu_hours


@dataclass(frozen=True)
class ProjectBudget:
    project: str
    programme: str
    members: tuple[str, ...]
    granted_hours: float
    used_hours: float
    valid_from: dt.date | None
    valid_until: dt.date | None
    active: bool
    origin: str = "file"  # "file", or "award N" (merit review)

    @property
    def remaining_hours(self) -> float:
        return max(self.granted_hours - self.used_hours, 0.0) if self.active else 0.0

    def as_dict(self) -> dict:
        return {
            "project": self.project, "programme": self.programme, "members": list(self.members),
            "granted_gpu_hours": round(self.granted_hours, 4),
            "used_gpu_hours": round(self.used_hours, 4),
            "remaining_gpu_hours": round(self.remaining_hours, 4),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "active": self.active, "origin": self.origin,
        }


def usage_query(allocs: Allocations):
    """One ``sacct`` for every project's GPU use since the earliest validity or period start."""
    starts = [p.valid_from for p in allocs.projects if p.valid_from]
    if allocs.period:
        starts.append(allocs.period.start)
    since = min(starts) if starts else dt.date(2000, 1, 1)
    return queries.gpu_usage([p.name for p in allocs.projects], since)


def _since(use: GpuUse, start: dt.datetime | None) -> bool:
    return start is None or use.start is None or use.start.replace(tzinfo=None) >= start


def budgets_from_usage(allocs: Allocations, usage, today: dt.date | None = None
                       ) -> list[ProjectBudget]:
    """Grant, use and what is left per project (``usage``: rows of :func:`usage_query`)."""
    today = today or dt.date.today()
    out = []
    for p in allocs.projects:
        start = dt.datetime.combine(p.valid_from, dt.time()) if p.valid_from else None
        used = sum(u.gpu_seconds for u in usage if u.account == p.name and _since(u, start)
                   ) / 3600
        out.append(ProjectBudget(p.name, p.programme, p.members, p.gpu_hours, used,
                                 p.valid_from, p.valid_until, p.active(today), p.origin))
    return out


def budgets(allocs: Allocations, slurm: SlurmClient, today: dt.date | None = None
            ) -> list[ProjectBudget]:
    return budgets_from_usage(allocs, slurm.run(usage_query(allocs)), today)


async def abudgets(allocs: Allocations, slurm: SlurmClient, today: dt.date | None = None
                   ) -> list[ProjectBudget]:
    return budgets_from_usage(allocs, await slurm.arun(usage_query(allocs)), today)


# -- programmes' shares --------------------------------------------------------------------

@dataclass(frozen=True)
class ProgrammeShare:
    """One programme against the machine: share, grants, use, reserved GPUs now."""

    programme: str
    description: str
    share: str | None                      # "30 %", "h100 20 %, a100 5000 GPU-hours", None
    share_gpu_hours: Mapping[str, float]   # per GPU type, in the period
    granted_hours: float                   # its projects' grants that overlap the period
    used_hours: float                      # GPU-hours used in the period
    reserved: Mapping[str, int]            # GPUs reserved for it, per type
    reserved_in_use: Mapping[str, int]     # how many of them its jobs hold now
    running: Mapping[str, int]             # GPUs its jobs hold now, per type
    may_hold: Mapping[str, int]            # the most it may hold at once, per reserved type
    kept_free_for: tuple[str, ...] = ()    # the programmes whose reservations limit it

    def as_dict(self) -> dict:
        total = sum(self.share_gpu_hours.values())
        return {
            "programme": self.programme, "description": self.description,
            "share": self.share,
            "share_gpu_hours": {t: round(v, 2) for t, v in self.share_gpu_hours.items()},
            "share_gpu_hours_total": round(total, 2) if self.share else None,
            "granted_gpu_hours": round(self.granted_hours, 4),
            "granted_over_share": (round(self.granted_hours / total, 4)
                                   if self.share and total else None),
            "used_gpu_hours": round(self.used_hours, 4),
            "reserved_gpus": dict(self.reserved),
            "reserved_gpus_in_use": dict(self.reserved_in_use),
            "gpus_in_use": dict(self.running),
            "may_hold_at_once": dict(self.may_hold),
            "kept_free_for": list(self.kept_free_for),
        }


@dataclass(frozen=True)
class MachineReport:
    """``allocations show``: the machine, each programme's share, each project's budget."""

    period: dict | None
    gpus: Mapping[str, int]
    gpu_hours: Mapping[str, float]
    programmes: tuple[ProgrammeShare, ...]
    projects: tuple[ProjectBudget, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"period": self.period, "machine": {"gpus": dict(self.gpus),
                                                   "gpu_hours": dict(self.gpu_hours)},
                "programmes": [p.as_dict() for p in self.programmes],
                "projects": [b.as_dict() for b in self.projects]}


def machine_report(allocs: Allocations, nodes: Iterable[Node], jobs: Iterable[Job],
                   usage: Iterable[GpuUse], today: dt.date | None = None) -> MachineReport:
    """Pure: the report from ``sinfo``, ``squeue`` and ``sacct`` rows."""
    today = today or dt.date.today()
    totals = gpu_totals(nodes)
    usage = list(usage)
    period = allocs.period
    machine = machine_gpu_hours(totals, period) if period else {}
    guards = plan_guards(allocs, totals)
    running: dict[str, dict[str, int]] = {}
    for j in jobs:
        prog = allocs.programme_of(j.account)
        if prog and j.state.is_running and j.gpus:
            mine = running.setdefault(prog.name, {})
            mine[j.gpu_type or "?"] = mine.get(j.gpu_type or "?", 0) + j.gpus
    start = dt.datetime.combine(period.start, dt.time()) if period else None
    end = dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time()) if period else None
    rows = []
    for prog in allocs.programmes:
        names = {p.name for p in prog.projects}
        used = sum(u.gpu_seconds for u in usage if u.account in names and _since(u, start)
                   and (end is None or u.start is None or u.start.replace(tzinfo=None) < end)
                   ) / 3600
        granted = sum(p.gpu_hours for p in prog.projects
                      if period is None or period.overlaps(p.valid_from, p.valid_until))
        now = running.get(prog.name, {})
        rows.append(ProgrammeShare(
            prog.name, prog.description, prog.share.describe() if prog.share else None,
            prog.share.gpu_hours(machine) if prog.share else {}, granted, used,
            prog.reserved, {t: min(n, now.get(t, 0)) for t, n in prog.reserved.items()},
            now, ({guards.gpu_type: guards.may_hold[prog.name]}
                  if prog.name in guards.may_hold else {}),
            guards.kept_free_for.get(prog.name, ())))
    period_dict = ({"start": period.start.isoformat(), "end": period.end.isoformat(),
                    "hours": period.hours} if period else None)
    return MachineReport(period_dict, totals, machine, tuple(rows),
                         tuple(budgets_from_usage(allocs, usage, today)))


def report(allocs: Allocations, slurm: SlurmClient, today: dt.date | None = None
           ) -> MachineReport:
    return machine_report(allocs, slurm.run(queries.nodes()), slurm.run(queries.jobs()),
                          slurm.run(usage_query(allocs)), today)
