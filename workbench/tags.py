"""The tag every workbench job carries (its Slurm comment): which hub, user and server own it.

The spawner writes it; the reconciler reads it to find orphans; dashboards use it to tell
notebook jobs from the rest.
"""

from __future__ import annotations


def job_tag(hub_id: str, user: str, server: str) -> str:
    """The comment every workbench job carries, naming hub, user and server."""
    return f"workbench:hub={hub_id}:user={user}:server={server}"


def parse_job_tag(comment: str) -> dict[str, str] | None:
    """``job_tag`` back to {"hub", "user", "server"}; None for a job that is not ours."""
    if not comment.startswith("workbench:"):
        return None
    fields = dict(part.partition("=")[::2] for part in comment.split(":")[1:])
    if not {"hub", "user", "server"} <= set(fields):
        return None
    return {k: fields[k] for k in ("hub", "user", "server")}
