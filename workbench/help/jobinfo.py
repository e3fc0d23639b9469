"""What support sees of the session behind a help request: its Slurm job (id, node, partition,
GPUs) from the one Slurm layer, and the tail of the job's output file.

The output file lies in the user's home and the help service runs as root: it is opened
without following links and only when the user owns it, so a user cannot make support read
another file through it.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat

from ..slurm import SlurmClient, SlurmError, queries
from ..tags import parse_job_tag

log = logging.getLogger(__name__)

#: the default place of a session's output (SlurmGPUSpawner.job_output)
JOB_OUTPUT = "{homedir}/.jupyterhub-slurm-%j.log"
TAIL_BYTES = 4096


async def session_job(slurm: SlurmClient, owner: str, server: str = "") -> dict:
    """The running job of ``owner``'s server, as ``{"job_id", "node", "partition", "gpus",
    "gpu_type", "account"}``; ``{}`` when Slurm does not show one."""
    try:
        jobs = await slurm.arun(queries.jobs())
    except SlurmError as e:
        log.warning("cannot read the queue for %s/%s: %s", owner, server, e)
        return {}
    for job in jobs:
        tag = parse_job_tag(job.comment)
        if tag and (tag["user"], tag["server"]) == (owner, server) and job.state.is_running:
            return {"job_id": job.job_id, "node": job.batch_host or job.nodes,
                    "partition": job.partition, "account": job.account, "gpus": job.gpus,
                    "gpu_type": job.gpu_type}
    return {}


def output_tail(owner: str, job_id: int, template: str = JOB_OUTPUT,
                max_bytes: int = TAIL_BYTES) -> str:
    """The last ``max_bytes`` of the job's output, if ``owner`` owns that file; else ''."""
    try:
        user = pwd.getpwnam(owner)
    except KeyError:
        return ""
    path = template.format(homedir=user.pw_dir).replace("%j", str(job_id))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != user.pw_uid:
            log.warning("not reading %s: not a regular file of %s", path, owner)
            return ""
        f.seek(max(0, info.st_size - max_bytes))
        text = f.read(max_bytes).decode("utf-8", errors="replace")
    return text if info.st_size <= max_bytes else text.partition("\n")[2]
