"""The workbench's one Slurm layer: typed queries run through :class:`SlurmClient`.

The spawner, the CLI, widgets and dashboards all import from here; nothing else runs or
parses a Slurm command.
"""

from . import queries
from .client import Query, SlurmClient, SlurmError, SlurmUnavailable
from .models import (
    AccountedJob,
    Association,
    GpuUse,
    Job,
    JobState,
    LiveUsage,
    Node,
    Partition,
)

__all__ = [
    "AccountedJob", "Association", "GpuUse", "Job", "JobState", "LiveUsage", "Node",
    "Partition", "Query", "SlurmClient", "SlurmError", "SlurmUnavailable", "queries",
]
