"""What the allocations file says, as plain values: the period, programmes with their share
of the machine and their reserved GPUs, projects with members and GPU-hour grants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..slurm.models import Node


@dataclass(frozen=True)
class Period:
    """The allocation period shares are measured over (both days included)."""

    start: dt.date
    end: dt.date

    @property
    def hours(self) -> int:
        return ((self.end - self.start).days + 1) * 24

    def overlaps(self, start: dt.date | None, end: dt.date | None) -> bool:
        return (start is None or start <= self.end) and (end is None or self.start <= end)

    @classmethod
    def current_year(cls, today: dt.date) -> Period:
        """January 1 to December 31 of ``today``'s year (``period: current-year``)."""
        return cls(dt.date(today.year, 1, 1), dt.date(today.year, 12, 31))


@dataclass(frozen=True)
class Share:
    """A programme's share of the machine's runtime in one period: a percentage of every GPU
    type, or per GPU type a percentage or GPU-hours (types not named: 0)."""

    percent: float | None = None                               # "30%": of every GPU type
    per_type: Mapping[str, tuple[float, str]] = field(default_factory=dict)  # type -> (n, % or h)

    def gpu_hours(self, machine: Mapping[str, float]) -> dict[str, float]:
        """GPU-hours per type, given the machine's GPU-hours per type in the period."""
        if self.percent is not None:
            return {t: hours * self.percent / 100 for t, hours in machine.items()}
        out = {}
        for t, (value, unit) in self.per_type.items():
            out[t] = machine.get(t, 0) * value / 100 if unit == "%" else value
        return out

    def describe(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g} %"
        return ", ".join(f"{t} {v:g}{' %' if u == '%' else ' GPU-hours'}"
                         for t, (v, u) in self.per_type.items())


@dataclass(frozen=True)
class Project:
    name: str
    programme: str
    members: tuple[str, ...]
    gpu_hours: float
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    #: where the grant was decided: ``file`` (the allocations file) or ``award N`` (award N
    #: of the merit review, kept in the workbench's database: :mod:`.awards`)
    origin: str = "file"
    #: the catalogue's datasets the grant gives the project (an award's; the file's projects
    #: get theirs from the catalogue's access rules)
    datasets: tuple[str, ...] = ()

    @property
    def awarded(self) -> bool:
        return self.origin != "file"

    def active(self, today: dt.date) -> bool:
        return ((self.valid_from is None or self.valid_from <= today) and
                (self.valid_until is None or today <= self.valid_until))

    def granted_minutes(self, today: dt.date) -> int:
        """The GPU-minutes Slurm enforces today: the grant inside its period, else 0."""
        return int(round(self.gpu_hours * 60)) if self.active(today) else 0


@dataclass(frozen=True)
class Award:
    """One awarded grant: the project as granted (its ``origin`` set when read back), the
    proposal it was awarded to, who decided and when; ``id`` 0: not stored yet."""

    grant: Project
    proposal: int = 0
    awarded_by: str = ""
    awarded_at: str = ""
    id: int = 0

    @property
    def origin(self) -> str:
        return f"award {self.id}" if self.id else "award (new)"

    def as_project(self) -> Project:
        return replace(self.grant, origin=self.origin)


@dataclass(frozen=True)
class Reserve:
    gpu_type: str
    count: int


@dataclass(frozen=True)
class Programme:
    name: str
    description: str
    projects: tuple[Project, ...] = field(default_factory=tuple)
    reserves: tuple[Reserve, ...] = ()
    share: Share | None = None
    reserve_line: int = field(default=0, compare=False)  # where reserved_gpus was written

    @property
    def reserved(self) -> dict[str, int]:
        """Reserved GPUs per type."""
        return {r.gpu_type: r.count for r in self.reserves}


@dataclass(frozen=True)
class Allocations:
    programmes: tuple[Programme, ...]
    path: Path | None = None
    period: Period | None = None

    @property
    def projects(self) -> list[Project]:
        return [p for prog in self.programmes for p in prog.projects]

    def project(self, name: str) -> Project | None:
        return next((p for p in self.projects if p.name == name), None)

    def projects_of(self, user: str) -> list[str]:
        return [p.name for p in self.projects if user in p.members]

    def programme(self, name: str) -> Programme | None:
        return next((p for p in self.programmes if p.name == name), None)

    def programme_of(self, account: str) -> Programme | None:
        """The programme of a project account (or of the programme's own account)."""
        return next((prog for prog in self.programmes
                     if prog.name == account or any(p.name == account for p in prog.projects)),
                    None)

    @property
    def reserving(self) -> list[Programme]:
        return [p for p in self.programmes if p.reserves]


def gpu_totals(nodes: Iterable[Node]) -> dict[str, int]:
    """GPUs per type over the cluster's nodes."""
    totals: dict[str, int] = {}
    for n in nodes:
        if n.gpu_type:
            totals[n.gpu_type] = totals.get(n.gpu_type, 0) + n.gpus
    return totals


def machine_gpu_hours(totals: Mapping[str, int], period: Period) -> dict[str, float]:
    """The machine's GPU-hours per type in ``period``: GPUs x hours."""
    return {t: float(n * period.hours) for t, n in sorted(totals.items())}
