"""Walltime of a running session: how much is left, and asking for more.

An extension is decided here and carried out by the operator side (the hub, as root, with
``scontrol update``): within the partition's MaxTime and the project's GPU-hours left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .resources import MAX_TIME_MIN, Budget, InvalidRequest, fits_budget
from .slurm.models import Job, Partition
from .slurm.parse import format_duration


@dataclass(frozen=True)
class Walltime:
    job_id: int
    time_limit_min: int
    end: datetime
    remaining_s: int
    max_limit_min: int | None  # the partition's MaxTime

    def as_dict(self) -> dict:
        return {"job_id": self.job_id, "time_limit_min": self.time_limit_min,
                "end": self.end.isoformat(timespec="seconds"), "remaining_s": self.remaining_s,
                "max_limit_min": self.max_limit_min,
                "can_extend_min": (None if self.max_limit_min is None else
                                   max(self.max_limit_min - self.time_limit_min, 0))}


def walltime(job: Job, partition: Partition | None, now: datetime | None = None
             ) -> Walltime | None:
    """Walltime of a running job (None for a job that is not running)."""
    if not job.state.is_running or job.start_time is None or job.time_limit_min is None:
        return None
    now = now or datetime.now(UTC)
    end = job.start_time.timestamp() + job.time_limit_min * 60
    return Walltime(job.job_id, job.time_limit_min, datetime.fromtimestamp(end, UTC),
                    max(int(end - now.timestamp()), 0),
                    partition.max_time_min if partition else None)


def plan_extension(job: Job, wall: Walltime, minutes, budget: Budget | None) -> int:
    """The new time limit (minutes) for ``job`` extended by ``minutes``; InvalidRequest with
    what is possible when the partition's limit or the project's GPU-hours do not allow it."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
        raise InvalidRequest("minutes", f"{minutes!r} is not a whole number of minutes >= 1")
    new_limit = wall.time_limit_min + minutes
    most = MAX_TIME_MIN if wall.max_limit_min is None else min(wall.max_limit_min,
                                                                MAX_TIME_MIN)
    if new_limit > most:
        room = max(most - wall.time_limit_min, 0)
        raise InvalidRequest(
            "minutes", f"partition {job.partition} allows at most "
            f"{format_duration(most)} per job; this session has "
            f"{format_duration(wall.time_limit_min)}, so at most {room} more minute"
            f"{'s' if room != 1 else ''} can be added")
    if budget is not None and job.gpus:
        extra = job.gpus * minutes / 60
        if not fits_budget(extra, budget):
            fits = int(budget.remaining_hours * 60 / job.gpus)
            raise InvalidRequest(
                "minutes", f"{minutes} more minutes on {job.gpus} GPU(s) cost {extra:.2f} "
                f"GPU-hours; project {job.account} has {budget.remaining_hours:.2f} left "
                f"(enough for {fits} more minute{'s' if fits != 1 else ''})")
    return new_limit
