"""A user's past sessions: where each ran, how it ended, what it cost and how well it used
what it held. Read from the audit store (what the hub submitted and saw end) and Slurm's
accounting (:func:`workbench.slurm.queries.efficiency`), with the job's own GPU samples and
output file; nothing is made up (a figure that was not measured is None).
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import efficiency as eff
from .audit import AuditLog
from .dashboards import joboutput
from .slurm import SlurmClient, queries

#: how many sessions the list shows
LIMIT = 50
#: lines of the output file's end shown per session
TAIL_LINES = 12


@dataclass
class PastSession:
    job_id: int
    server: str
    submitted: str
    options: dict
    project: str = ""
    partition: str = ""
    node: str = ""
    gpus: int = 0
    start: str | None = None
    end: str | None = None
    state: str = ""
    exit_code: str = ""
    ended: str = ""  # how it ended, in plain words
    gpu_hours: float | None = None
    output: str = ""  # the output file's path
    output_tail: str = ""
    efficiency: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return dict(self.__dict__)


def gpu_samples_path(user: str, job_id: int, home: Path | None = None) -> Path:
    """Where the job side writes its GPU samples (``python -m workbench.efficiency``)."""
    return (home or Path(pwd.getpwnam(user).pw_dir)) / f".jupyterhub-slurm-{job_id}.gpu.jsonl"


def past_sessions(user: str, audit: AuditLog, slurm: SlurmClient, limit: int = LIMIT,
                  cull_timeout_s: int | None = None,
                  home_of: Callable[[str], Path] | None = None) -> list[PastSession]:
    """The last ``limit`` sessions of ``user``, newest first. Raises
    :class:`~workbench.slurm.SlurmError` when accounting does not answer."""
    # the last `limit` submits, then what was recorded of them since the oldest of those
    submits = audit.records(action="session.submit", actor=user, limit=limit)
    if not submits:
        return []
    submitted: dict[int, PastSession] = {}
    for r in submits:
        job = r.details.get("job_id")
        if isinstance(job, int):
            options = {k: v for k, v in r.details.items() if k != "job_id"}
            submitted[job] = PastSession(job, r.subject.partition("/")[2], r.at, options,
                                         options.get("account", ""),
                                         options.get("partition", ""))
    cancels: dict[int, dict] = {}
    ends: dict[int, dict] = {}
    for r in audit.records(action="session.*", actor=user, limit=None, since=submits[0].at):
        job = r.details.get("job_id")
        if r.action == "session.cancel":
            cancels[job] = r.details
        elif r.action == "session.ended":
            ends[job] = r.details
    newest = sorted(submitted.values(), key=lambda s: s.job_id, reverse=True)[:limit]
    if not newest:
        return []
    usage = {u.job_id: u for u in slurm.run(queries.efficiency([s.job_id for s in newest]))}
    home = home_of(user) if home_of else None
    for s in newest:
        u = usage.get(s.job_id)
        end = ends.get(s.job_id, {})
        s.output = end.get("log", "")
        cancel = cancels.get(s.job_id)
        culled = None
        if cancel is not None and cull_timeout_s and (cancel.get("idle_s") or 0) >= \
                cull_timeout_s:
            culled = cull_timeout_s // 60
        if u is None:  # not in accounting (yet): what the hub saw
            s.state = end.get("state", "")
            s.exit_code = end.get("exit_code", "")
            s.ended = eff.ended_how(s.state, s.exit_code, end.get("reason", ""),
                                    cancelled_by_owner=cancel is not None and culled is None,
                                    culled_after_min=culled) if s.state else ""
        else:
            samples = eff.read_samples(gpu_samples_path(user, s.job_id, home))
            e = eff.efficiency(u, samples, cancelled_by_owner=cancel is not None and
                               culled is None, culled_after_min=culled)
            s.node, s.gpus, s.state, s.exit_code = u.nodes, u.gpus, u.state.value, u.exit_code
            s.project, s.partition = u.account or s.project, u.partition or s.partition
            s.start = u.start.isoformat() if u.start else None
            s.end = u.end.isoformat() if u.end else None
            s.ended = e.ended
            s.gpu_hours = round(u.gpus * u.elapsed_s / 3600, 3)
            s.efficiency = e.as_json()
        try:
            path, text = joboutput.tail(user, s.job_id, max_lines=TAIL_LINES, home=home)
            s.output, s.output_tail = str(path), text
        except (joboutput.OutputError, KeyError, OSError):
            pass  # no output file (any more): the path the hub recorded stays
    return newest
