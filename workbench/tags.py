"""The tag every workbench job carries (its Slurm comment): which hub, user and server own it.

The spawner writes it; the reconciler reads it to find orphans; dashboards use it to tell
notebook jobs from the rest. Worker jobs a session starts (Dask workers, torch runs,
:mod:`workbench.scaling`) carry the same tag plus ``session=<job id of the session>``: they
belong to that session and end with it.
"""

from __future__ import annotations

#: the start of every notebook session job's name (``jupyter-USER[-SERVER]``): how accounting,
#: which keeps no comment in the history the dashboards read, tells sessions from other jobs
SESSION_JOB_PREFIX = "jupyter-"


def session_job_name(user: str, server: str) -> str:
    """The Slurm job name of ``user``'s session ``server`` ("" for the default one)."""
    return f"{SESSION_JOB_PREFIX}{user}" + (f"-{server}" if server else "")


def job_tag(hub_id: str, user: str, server: str) -> str:
    """The comment every workbench job carries, naming hub, user and server."""
    return f"workbench:hub={hub_id}:user={user}:server={server}"


def worker_tag(session_tag: str, session_job_id: int) -> str:
    """The comment of a worker job started from the session whose job carries
    ``session_tag``: the same hub, user and server, plus the session's job id."""
    if parse_job_tag(session_tag) is None:
        raise ValueError(f"{session_tag!r} is not a workbench session tag")
    return f"{session_tag}:session={int(session_job_id)}"


def parse_job_tag(comment: str) -> dict[str, str] | None:
    """``job_tag`` back to {"hub", "user", "server"} (plus "session" for a worker job,
    :func:`worker_tag`); None for a job that is not ours."""
    if not comment.startswith("workbench:"):
        return None
    fields = dict(part.partition("=")[::2] for part in comment.split(":")[1:])
    if not {"hub", "user", "server"} <= set(fields):
        return None
    keys = ("hub", "user", "server", "session")
    if "session" in fields and not fields["session"].isdigit():
        return None
    return {k: fields[k] for k in keys if k in fields}
