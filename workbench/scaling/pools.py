"""Worker groups and the request check of scaling: the spawn form's check, plus counts.

A :class:`WorkerPool` says what one worker of a group gets (partition, GPUs, CPUs, memory,
walltime), like a spawn request. :func:`check_pool` runs it through the one request check,
:func:`workbench.resources.validate_request`, against the same cluster view the spawn form
uses, then checks what only several workers raise: the count (not negative, not more than the
partition could ever hold) and the cost of all of them against the project's GPU-hours left
(:func:`workbench.resources.check_budget`). A refused request raises :class:`ScalingError`
(an :class:`~workbench.resources.InvalidRequest`, naming the field) before any job exists.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ..resources import (
    ClusterView,
    InvalidRequest,
    ResourceRequest,
    check_budget,
    fits_budget,
    validate_request,
)

_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")


class ScalingError(InvalidRequest):
    """A scaling request refused before any job was submitted; ``field`` names the culprit
    (``count``, ``nodes``, ``gpus``, ``account``...) and ``pool`` the worker group."""

    def __init__(self, field: str, message: str, pool: str = ""):
        self.pool = pool
        super().__init__(field, message)

    @classmethod
    def of(cls, e: InvalidRequest, pool: str) -> ScalingError:
        return cls(e.field, e.message, pool)

    def __str__(self) -> str:
        where = f" of worker group {self.pool!r}" if self.pool else ""
        return f"Invalid {self.field}{where}: {self.message}"


@dataclass(frozen=True)
class WorkerPool:
    """One group of identical workers: what each worker job asks Slurm for.

    ``gpus`` are per worker (each worker is one job on one node); ``gpu_type`` '' takes the
    partition's first type, as the spawn form does."""

    name: str
    partition: str
    gpus: int = 0
    gpu_type: str = ""
    cpus: int = 1
    memory: str = "4G"
    runtime: str = "01:00:00"

    def options(self, account: str) -> dict:
        """The spawn form's ``user_options`` for one worker of this group (no ``gpu_type``
        when none is chosen: the form's default, the partition's first type, applies)."""
        options = {"partition": self.partition, "account": account, "gpus": self.gpus,
                   "cpus": self.cpus, "memory": self.memory, "runtime": self.runtime}
        if self.gpu_type:
            options["gpu_type"] = self.gpu_type
        return options

    @classmethod
    def from_dict(cls, spec: Mapping) -> WorkerPool:
        if not isinstance(spec, Mapping):
            raise ScalingError("pools", f"a worker group is a mapping of its fields, not "
                               f"{type(spec).__name__}")
        unknown = sorted(str(k) for k in set(spec) - {"name", "partition", "gpus", "gpu_type",
                                                      "cpus", "memory", "runtime"})
        if unknown:
            raise ScalingError(unknown[0], "unknown field of a worker group; the fields are: "
                               "name, partition, gpus, gpu_type, cpus, memory, runtime")
        for needed in ("name", "partition"):
            if needed not in spec:
                raise ScalingError(needed, "a worker group needs a name and a partition")
        return cls(**spec)


@dataclass(frozen=True)
class PoolRequest:
    """A worker group that passed the check: each worker's validated request."""

    pool: WorkerPool
    request: ResourceRequest

    @property
    def name(self) -> str:
        return self.pool.name

    def gpu_hours(self, count: int) -> float:
        return self.request.gpu_hours * count


def check_name(name) -> str:
    if not isinstance(name, str) or not _POOL_NAME.match(name):
        raise ScalingError("name", f"{name!r} is not a worker group name: 1-16 lower-case "
                           "letters and digits, starting with a letter (e.g. 'cpu', 'gpu')")
    return name


def check_count(count, what: str = "count", low: int = 0) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise ScalingError(what, f"{count!r} is not a whole number of workers")
    if count < low:
        raise ScalingError(what, f"{count} is not allowed; ask for {low} or more")
    return count


def check_nodes(nodes: int, request: ResourceRequest, view: ClusterView,
                field: str = "nodes", pool: str = "") -> int:
    """The node count of a torch run (one job on ``nodes`` nodes, each as ``request``): at
    most the partition's nodes; :class:`ScalingError` naming ``field`` if not."""
    most = view.partitions[request.partition].nodes
    if nodes > most:
        raise ScalingError(
            field, f"partition {request.partition} has {most} node{'s' if most != 1 else ''}"
            f" and a torch run takes one count per node; ask for at most {most}", pool)
    return nodes


def capacity(request: ResourceRequest, view: ClusterView) -> int:
    """How many such workers the whole partition could ever hold at once (all nodes free)."""
    offer = view.partitions[request.partition]
    per_node = min(offer.cpus_per_node // max(request.cpus, 1),
                   offer.memory_mb_per_node // max(request.memory_mb, 1),
                   offer.gpus_per_node // request.gpus if request.gpus else math.inf)
    return int(per_node) * offer.nodes


def check_pool(pool: WorkerPool, account: str, view: ClusterView, count: int = 0) -> PoolRequest:
    """``pool`` for ``account`` through the spawn form's check, and ``count`` of its workers
    against the partition's size and the project's GPU-hours; :class:`ScalingError` if not."""
    check_name(pool.name)
    try:
        request = validate_request(pool.options(account), view)
    except InvalidRequest as e:
        raise ScalingError.of(e, pool.name) from None
    count = check_count(count)
    most = capacity(request, view)
    if count > most:
        raise ScalingError(
            "count", f"{count} workers of {request.cpus} CPUs, {request.memory}"
            f"{f', {request.gpus} GPUs' if request.gpus else ''} are more than partition "
            f"{request.partition} could ever hold at once ({most}); ask for at most {most}",
            pool.name)
    if count and request.gpus:
        try:  # the cost of all of them, as one request of count x gpus
            check_budget(replace(request, gpus=request.gpus * count), view.budgets.get(account))
        except InvalidRequest as e:
            raise ScalingError("count", f"{count} workers: {e.message}", pool.name) from None
    return PoolRequest(pool, request)


def check_total(planned: Iterable[tuple[PoolRequest, int]], account: str,
                view: ClusterView) -> float:
    """GPU-hours of all groups at their counts; :class:`ScalingError` if more than the
    project has left. Returns the cost."""
    planned = list(planned)
    cost = sum(p.gpu_hours(n) for p, n in planned)
    budget = view.budgets.get(account)
    if not fits_budget(cost, budget):
        parts = ", ".join(f"{n} x {p.name} ({p.gpu_hours(n):.2f})" for p, n in planned if n)
        raise ScalingError(
            "count", f"all worker groups together cost {cost:.2f} GPU-hours ({parts}), but "
            f"project {account} has {budget.remaining_hours:.2f} GPU-hours left; ask for "
            "fewer GPU workers or a shorter walltime")
    return cost
