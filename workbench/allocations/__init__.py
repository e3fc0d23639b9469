"""Programmes, their shares of the machine, reserved GPUs, projects and GPU-hour grants: one
file, applied to Slurm.

The allocations file (YAML; the demo's is ``cluster/allocations.yaml``)::

    period: {start: 2026-01-01, end: 2026-12-31}   # the allocation period shares measure
                                       #   (or current-year: Jan 1 to Dec 31 of the year
                                       #   the file is read in, as the demo's)
    programmes:
      startups:                        # a programme: a Slurm account
        description: Start-up programme
        share: 30%                     # of the machine's runtime in the period (every GPU
                                       #   type); or per type: {h100: 30%, a100: 5000} (GPU-h)
        reserved_gpus: {h100: 2}       # optional: GPUs kept free for it, on any nodes
        projects:
          startup-helios:              # a project: a Slurm account under its programme
            members: [alice]           #   Unix users; each gets an association
            gpu_hours: 500             #   the grant, enforced as GrpTRESMins=gres/gpu=30000
            valid_from: 2026-01-01     #   optional; outside the period the grant is 0
            valid_until: 2027-12-31

Modules, one job each: :mod:`.model` (the values), :mod:`.loader` (reading and checking the
file, errors with ``file:line``), :mod:`.shares` (shares against the machine, reservations
and grants against shares), :mod:`.guards` (how reservations are guaranteed: group
limits on accounts and a QOS), :mod:`.slurmsync` (plan and apply with ``sacctmgr``),
:mod:`.budgets` (granted, used and left per project; shares per programme), :mod:`.show`
(the report in words).
"""

from .budgets import (
    MachineReport,
    ProgrammeShare,
    ProjectBudget,
    abudgets,
    budgets,
    budgets_from_usage,
    machine_report,
    report,
    usage_query,
)
from .guards import Guards, plan_guards
from .loader import AllocationError, default_path, load
from .model import Allocations, Period, Programme, Project, Reserve, Share, gpu_totals
from .slurmsync import Change, apply, apply_plan, plan

__all__ = [
    "AllocationError", "Allocations", "Change", "Guards", "MachineReport", "Period",
    "ProgrammeShare", "Programme", "Project", "ProjectBudget", "Reserve", "Share", "abudgets",
    "apply", "apply_plan", "budgets", "budgets_from_usage", "default_path", "gpu_totals",
    "load", "machine_report", "plan", "plan_guards", "report", "usage_query",
]
