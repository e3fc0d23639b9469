"""Making Slurm and the datasets' access match the allocations in force: the allocations
file and the awards of merit review. One path for ``workbench allocations apply`` and for an
award decided in the ``access`` service: accounts under their programme, one association per
member, the GPU-minute limit (:mod:`workbench.allocations.slurmsync`), then the projects'
Unix groups and the datasets' ACLs (:mod:`workbench.catalogue.fsaccess`). Idempotent: the
second run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .allocations import Allocations, apply_plan, load, plan
from .allocations.loader import IN_FORCE, awards_in_force, default_path
from .allocations.model import Award
from .slurm import SlurmClient, queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enacted:
    """What :func:`enact` did (or would do, ``dry_run``): Slurm's changes and the datasets'
    access changes, in words; ``data_error``: why the datasets' access was not updated."""

    allocations: Allocations
    slurm: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    data_error: str = ""


def load_in_force(slurm: SlurmClient, path: Path | None = None,
                  awards: Iterable[Award] | None = IN_FORCE) -> Allocations:
    """The allocations file ``path`` (default: the one in force) with the factory's awards
    (or ``awards``), checked against the live nodes; raises
    :class:`~workbench.allocations.AllocationError`. The awards come with any file: applying
    a site's new file keeps the awarded projects (one whose programme it lacks is refused)."""
    if awards is IN_FORCE:
        awards = awards_in_force(default_path())
    return load(path, nodes=slurm.run(queries.nodes()), awards=awards)


def data_access(allocs: Allocations, dry_run: bool) -> tuple[list[str], str]:
    """Make the projects' Unix groups and the dataset directories' ACLs match ``allocs``:
    (changes in words, "" or why nothing was done)."""
    from .catalogue import fsaccess
    from .catalogue.model import CatalogueError
    from .catalogue.policy import Membership

    try:
        changes = fsaccess.sync_all(Membership.from_allocations(allocs), dry_run=dry_run)
    except CatalogueError as e:
        return [], str(e)
    return [c.summary for c in changes], ""


def enact(slurm: SlurmClient, path: Path | None = None, cluster: str | None = None,
          dry_run: bool = False, awards: Iterable[Award] | None = IN_FORCE) -> Enacted:
    """Load the allocations (:func:`load_in_force`; raising their ``AllocationError`` before
    anything is changed), then make Slurm and the datasets' access match them."""
    allocs = load_in_force(slurm, path, awards)
    changes = plan(allocs, slurm, cluster or slurm.run(queries.cluster_name()))
    data, error = data_access(allocs, dry_run)
    if not dry_run:
        apply_plan(changes, slurm)
    for c in changes:
        log.info("%s%s", "would: " if dry_run else "", c.summary)
    return Enacted(allocs, [c.summary for c in changes], data, error)
