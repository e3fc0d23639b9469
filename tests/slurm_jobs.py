"""Plain Slurm jobs that integration tests submit by hand, as a user would with ``sbatch``
(the hub's own jobs go through the spawner, the workbench's through ``queries.submit``)."""

from __future__ import annotations

from workbench.slurm import Query, SlurmClient
from workbench.slurm.parse import parse_job_id


def sbatch(slurm: SlurmClient, user: str, *args: str, script: str = "#!/bin/bash\nsleep 60\n",
           output: str = "/dev/null") -> int:
    """``sbatch --parsable -o OUTPUT ARGS`` as ``user`` with ``script`` on stdin; the job id
    (:class:`~workbench.slurm.SlurmError` if Slurm refuses it)."""
    return slurm.run(Query("sbatch", ("--parsable", "-o", output, *args), parse_job_id,
                           as_user=user, input=script))
