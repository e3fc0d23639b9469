"""The one model of a resource request, and its validation against the live cluster.

The spawn form, the REST API (``user_options``) and, later, workers scaled from a notebook all
describe what they want as the same dict::

    {"partition": "gpu", "account": "startup-helios", "gpus": 2, "gpu_type": "h100",
     "cpus": 8, "memory": "32G", "runtime": "02:00:00"}

:func:`validate_request` turns it into a :class:`ResourceRequest` or raises
:class:`InvalidRequest` naming the field and what is allowed. Every value that reaches a job
script has passed through here: names are checked against what Slurm offers, numbers against
the partition's nodes and limits, and nothing else is accepted.

:func:`cluster_view` asks Slurm for the :class:`ClusterView` a request is checked against
(partitions, the user's accounts, their GPU-hours left): the spawn form and the scaling of a
session both take it from here. :func:`fits_budget` is the one comparison of a cost with the
GPU-hours a project has left (spawn requests, worker groups, walltime extensions).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .allocations.budgets import ProjectBudget, abudgets
from .allocations.loader import AllocationError, cached, default_path
from .allocations.model import Allocations
from .slurm import SlurmClient, queries
from .slurm.models import Association, Node, Partition
from .slurm.parse import format_duration, parse_duration_min
from .slurm.snapshot import shared_nodes, shared_partitions
from .webinput import whole

_log = logging.getLogger(__name__)

FIELDS = ("partition", "account", "gpus", "gpu_type", "cpus", "memory", "runtime")
#: the longest time limit Slurm takes, in minutes (32 bits; the two values above it mean
#: "infinite" and "not set"): the most a partition without MaxTime allows
MAX_TIME_MIN = 2**32 - 3

_MEMORY_RE = re.compile(r"^([1-9][0-9]{0,8})([KMGT]?)$")
_RUNTIME_RE = re.compile(r"^(?:(\d{1,2})-)?(\d{1,3}):([0-5]\d):([0-5]\d)$", re.ASCII)
_UNIT_MB = {"K": 1 / 1024, "M": 1, "": 1, "G": 1024, "T": 1024 * 1024}


class InvalidRequest(ValueError):
    """A request refused before anything reached Slurm; ``field`` names the culprit."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class PartitionOffer:
    """What one partition offers a request: limits per node, GPU types, time."""

    name: str
    default: bool
    max_time_min: int | None
    default_time_min: int | None
    gpu_types: tuple[str, ...]
    gpus_per_node: int
    cpus_per_node: int
    memory_mb_per_node: int
    nodes: int
    idle_gpus: int
    allow_accounts: tuple[str, ...] | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name, "default": self.default, "max_time_min": self.max_time_min,
            "default_time_min": self.default_time_min, "gpu_types": list(self.gpu_types),
            "gpus_per_node": self.gpus_per_node, "cpus_per_node": self.cpus_per_node,
            "memory_mb_per_node": self.memory_mb_per_node, "nodes": self.nodes,
            "idle_gpus": self.idle_gpus,
        }


class Budget(Protocol):
    """What is granted, used and left of a project's GPU-hours (``allocations.ProjectBudget``)."""

    granted_hours: float
    used_hours: float

    @property
    def remaining_hours(self) -> float: ...


@dataclass(frozen=True)
class ClusterView:
    """The live cluster as one user sees it: partitions on offer, their own accounts and what
    is left of each account's GPU-hours (accounts without a budget are not limited here)."""

    partitions: Mapping[str, PartitionOffer]
    accounts: tuple[str, ...]
    budgets: Mapping[str, Budget] = field(default_factory=dict)

    @classmethod
    def build(cls, nodes: Iterable[Node], partitions: Iterable[Partition],
              associations: Iterable[Association], user: str,
              budgets: Iterable | None = None) -> ClusterView:
        nodes = list(nodes)
        offers = {}
        for p in partitions:
            if p.state != "UP":
                continue
            members = [n for n in nodes if p.name in n.partitions]
            if not members:
                continue
            allow = None if p.allow_accounts in ("ALL", "") else tuple(p.allow_accounts.split(","))
            offers[p.name] = PartitionOffer(
                name=p.name, default=p.default, max_time_min=p.max_time_min,
                default_time_min=p.default_time_min,
                gpu_types=tuple(sorted({n.gpu_type for n in members if n.gpu_type})),
                gpus_per_node=max(n.gpus for n in members),
                cpus_per_node=max(n.cpus for n in members),
                memory_mb_per_node=max(n.memory_mb for n in members),
                nodes=len(members),
                idle_gpus=sum(n.gpus_idle for n in members),
                allow_accounts=allow,
            )
        accounts = tuple(sorted({a.account for a in associations if a.user == user}))
        return cls(offers, accounts,
                   {b.project: b for b in budgets or () if b.project in accounts})


def budget_allocations(allocations_file: str | None, log: logging.Logger = _log,
                       who: str = "") -> Allocations | None:
    """The allocations whose budgets requests are checked against: ``allocations_file``, or
    (None) :func:`~workbench.allocations.default_path` looked up now; '' or an unusable file
    (logged as an error for ``who``): None, no budget check here (Slurm still enforces its
    limits)."""
    if allocations_file == "":
        return None
    path = Path(allocations_file or default_path())
    try:
        return cached(path)
    except AllocationError as e:
        log.error("%s: allocations file unusable, budgets not shown: %s", who, e)
        return None


async def project_budgets(allocations: Allocations | None,
                          slurm: SlurmClient) -> list[ProjectBudget]:
    """GPU-hours granted, used and left per project (one sacct); [] without allocations."""
    return await abudgets(allocations, slurm) if allocations else []


async def cluster_view(slurm: SlurmClient, user_name: str,
                       allocations: Allocations | None,
                       shared_age: float | None = None) -> ClusterView:
    """Partitions, GPU types, ``user_name``'s accounts and their GPU-hours, from Slurm now
    (sinfo, scontrol, sacctmgr and, with ``allocations``, one sacct, all at once).

    ``shared_age``: nodes and partitions come from the process's shared snapshots
    (:mod:`workbench.slurm.snapshot`) no older than this many seconds, so that callers at the
    same moment (a hub's spawns in a storm of them) share one sinfo and one scontrol; None:
    both asked now for this caller alone."""
    if shared_age is None:
        nodes_now, parts_now = slurm.arun(queries.nodes()), slurm.arun(queries.partitions())
    else:
        nodes_now = shared_nodes(slurm).get(shared_age)
        parts_now = _partition_list(shared_partitions(slurm).get(shared_age))
    nodes, parts, assocs, budgets = await asyncio.gather(
        nodes_now, parts_now,
        slurm.arun(queries.user_accounts(user_name)),
        project_budgets(allocations, slurm),
    )
    return ClusterView.build(nodes, parts, assocs, user_name, budgets)


async def _partition_list(by_name) -> list[Partition]:
    return list((await by_name).values())


@dataclass(frozen=True)
class ResourceRequest:
    """A validated request: every field is safe to put in a job script."""

    partition: str
    account: str
    gpus: int
    gpu_type: str
    cpus: int
    memory_mb: int
    runtime_min: int

    @property
    def gres(self) -> str:
        """``gpu:h100:2``, ``gpu:2`` or '' for no GPU."""
        if not self.gpus:
            return ""
        return f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"

    @property
    def memory(self) -> str:
        return f"{self.memory_mb}M"

    @property
    def time(self) -> str:
        return format_duration(self.runtime_min)

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.runtime_min / 60

    def as_options(self) -> dict:
        """Back to the ``user_options`` form (memory in MiB, runtime as Slurm time)."""
        return {
            "partition": self.partition, "account": self.account, "gpus": self.gpus,
            "gpu_type": self.gpu_type, "cpus": self.cpus, "memory": self.memory,
            "runtime": self.time,
        }


def _name(options: Mapping, field: str, allowed: Iterable[str], what: str) -> str:
    value = options[field]
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        shown = ", ".join(allowed) if allowed else "none"
        raise InvalidRequest(field, f"{value!r} is not {what}; choose one of: {shown}")
    return value


def _int(options: Mapping, field: str, low: int, high: int, what: str) -> int:
    value = options[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"{value!r} is not a whole number; {what}")
    if not low <= value <= high:
        raise InvalidRequest(field, f"{value} is out of range; {what}")
    return value


def parse_memory_mb(value) -> int:
    """``"16G"``, ``"512M"``, ``"2048"`` (MiB) to MiB; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a memory size")
    m = _MEMORY_RE.match(str(value).strip().upper())
    if not m:
        raise ValueError(f"{value!r} is not a memory size like 16G or 512M")
    return max(1, int(int(m.group(1)) * _UNIT_MB[m.group(2)]))


def parse_runtime_min(value) -> int:
    """``"HH:MM:SS"``, ``"D-HH:MM:SS"`` or whole minutes to minutes (seconds round up)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a runtime")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        minutes = whole(text)
        if minutes is not None:
            return minutes
        if _RUNTIME_RE.match(text):
            return parse_duration_min(text)
    raise ValueError(f"{value!r} is not a runtime like 02:00:00 or 120 (minutes)")


def defaults(view: ClusterView, default_partition: str = "gpu") -> dict:
    """The request a form starts from: the default partition, the user's first account."""
    name = default_partition if default_partition in view.partitions else next(
        (p.name for p in view.partitions.values() if p.default), next(iter(view.partitions), ""))
    offer = view.partitions.get(name)
    return {
        "partition": name,
        "account": view.accounts[0] if view.accounts else "",
        "gpus": min(1, offer.gpus_per_node) if offer else 0,
        "gpu_type": offer.gpu_types[0] if offer and offer.gpu_types else "",
        "cpus": 2,
        "memory": "8G",
        "runtime": format_duration(min(60, (offer.max_time_min or 60) if offer else 60)),
    }


def validate_request(options: Mapping, view: ClusterView,
                     default_partition: str = "gpu") -> ResourceRequest:
    """Check ``options`` against ``view``; fields left out take :func:`defaults`."""
    if not isinstance(options, Mapping):
        raise InvalidRequest("user_options", "must be an object of field: value")
    unknown = sorted(str(k) for k in options if k not in FIELDS)
    if unknown:  # named as written, or quoted when that would not show (empty, spaces...)
        name = unknown[0] if unknown[0].isidentifier() and len(unknown[0]) <= 40 \
            else repr(unknown[0][:40])
        raise InvalidRequest(name, f"unknown field; the fields are: {', '.join(FIELDS)}")
    if not view.accounts:
        raise InvalidRequest(
            "account", "you belong to no Slurm project account yet; ask your project's "
            "manager or the AI Factory's support to add you to one")
    merged = {**defaults(view, default_partition), **options}

    partition = _name(merged, "partition", view.partitions, "a partition of this cluster")
    offer = view.partitions[partition]
    allowed_accounts = [a for a in view.accounts
                        if offer.allow_accounts is None or a in offer.allow_accounts]
    account = _name(merged, "account", allowed_accounts,
                    f"one of your project accounts allowed in partition {partition}")

    if "gpu_type" not in options and "partition" in options:
        merged["gpu_type"] = offer.gpu_types[0] if offer.gpu_types else ""
    if "gpus" not in options and "partition" in options:
        merged["gpus"] = min(1, offer.gpus_per_node)
    gpus = _int(merged, "gpus", 0, offer.gpus_per_node,
                f"partition {partition} has at most {offer.gpus_per_node} GPUs per node")
    gpu_type = merged["gpu_type"] or ""
    if gpu_type:
        gpu_type = _name(merged, "gpu_type", offer.gpu_types,
                         f"a GPU type of partition {partition}")
    cpus = _int(merged, "cpus", 1, offer.cpus_per_node,
                f"partition {partition} has 1 to {offer.cpus_per_node} CPUs per node")

    try:
        memory_mb = parse_memory_mb(merged["memory"])
    except ValueError as e:
        raise InvalidRequest("memory", str(e)) from None
    if memory_mb > offer.memory_mb_per_node:
        raise InvalidRequest(
            "memory", f"{merged['memory']} is more than a node of partition {partition} has "
            f"({offer.memory_mb_per_node // 1024}G)")

    try:
        runtime_min = parse_runtime_min(merged["runtime"])
    except ValueError as e:
        raise InvalidRequest("runtime", str(e)) from None
    limit = MAX_TIME_MIN if offer.max_time_min is None else min(offer.max_time_min,
                                                                 MAX_TIME_MIN)
    if not 1 <= runtime_min <= limit:
        most = format_duration(limit)
        raise InvalidRequest(
            "runtime", f"{merged['runtime']} is outside partition {partition}'s limit "
            f"(1 minute to {most})")
    request = ResourceRequest(partition, account, gpus, gpu_type, cpus, memory_mb, runtime_min)
    check_budget(request, view.budgets.get(account))
    return request


def fits_budget(gpu_hours: float, budget: Budget | None) -> bool:
    """Whether ``gpu_hours`` fit in what ``budget`` has left (None: no limit here), allowing
    for the rounding of summed floats: the one GPU-hour check of every request."""
    return budget is None or gpu_hours <= budget.remaining_hours + 1e-9


def check_budget(request: ResourceRequest, budget: Budget | None) -> None:
    """Refuse a request that costs more GPU-hours than its project has left, saying what fits."""
    if fits_budget(request.gpu_hours, budget):
        return
    left = budget.remaining_hours
    cost = (f"costs {request.gpu_hours:.2f} GPU-hours ({request.gpus} GPU"
            f"{'s' if request.gpus > 1 else ''} for {request.time})")
    if left <= 0:
        raise InvalidRequest(
            "account", f"your request {cost}, but project {request.account} has no GPU-hours "
            f"left (granted {budget.granted_hours:g}, used {budget.used_hours:.2f}); ask your "
            "programme for more, or start a CPU-only session (0 GPUs)")
    fits = []
    minutes = int(left * 60 / request.gpus)
    if minutes >= 1:
        fits.append(f"{request.gpus} GPU{'s' if request.gpus > 1 else ''} for at most "
                    f"{format_duration(minutes)}")
    if request.gpus > 1 and left * 60 >= request.runtime_min:
        fits.append(f"{int(left * 60 // request.runtime_min)} GPU(s) for {request.time}")
    raise InvalidRequest(
        "account", f"your request {cost}, but project {request.account} has "
        f"{left:.2f} GPU-hours left; what would fit: {' or '.join(fits) or '0 GPUs'}")
