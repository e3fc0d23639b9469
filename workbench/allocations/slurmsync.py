"""Making Slurm match the allocations file: :func:`plan` compares, :func:`apply_plan` changes.

Accounts: programmes and projects (``GrpTRESMins=gres/gpu=<hours x 60>`` per project, 0
outside its validity period), one association per member; the reservations' guard accounts
and limits of :mod:`.guards`. Every change is one ``sacctmgr`` call with a summary in words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..slurm import SlurmClient, queries
from .guards import GUARD_PREFIX, Guards, billing_limit, is_guard_name, plan_guards
from .loader import AllocationError
from .model import Allocations, gpu_totals

#: QOS names an earlier layout used for a reserved share (removed)
_OLD_QOS_PREFIXES = (GUARD_PREFIX, "shared-")


@dataclass(frozen=True)
class Change:
    """One sacctmgr call and what it means, in words."""

    summary: str
    args: tuple[str, ...]


def plan(allocs: Allocations, slurm: SlurmClient, cluster: str,
         today: dt.date | None = None) -> list[Change]:
    """The changes that make Slurm match ``allocs`` (empty when it already does)."""
    today = today or dt.date.today()
    rows = slurm.run(queries.account_tree(cluster))
    accounts = {a.account: a for a in rows if not a.user}
    members = {(a.user, a.account) for a in rows if a.user}
    qos_rows = {r[0]: r for r in slurm.run(queries.sacctmgr_list("qos", "Name", "GrpTRES"))}
    nodes = slurm.run(queries.nodes())
    guards = plan_guards(allocs, gpu_totals(nodes))
    if guards.gpu_type:
        weights = {p.name: p.billing_weights for p in slurm.run(queries.partitions())}
        check_billing(allocs, guards.gpu_type, nodes, weights)
    changes: list[Change] = []
    for pool in guards.pools:
        changes += _account(pool.name, pool.parent, accounts, cluster, pool.description, "root")
        changes += _limit(pool.name, pool.limit, guards.gpu_type, accounts, cluster)
    for prog in allocs.programmes:
        changes += _account(prog.name, guards.parent[prog.name], accounts, cluster,
                            prog.description or prog.name, "root")
        changes += _limit(prog.name, guards.cap.get(prog.name), guards.gpu_type, accounts,
                          cluster)
        current = accounts.get(prog.name)
        if current is None or current.qos != "normal" or current.default_qos != "normal":
            changes.append(Change(
                f"{prog.name} jobs run under QOS normal",
                ("modify", "account", "where", f"name={prog.name}", f"cluster={cluster}", "set",
                 "QOS=normal", "DefaultQOS=normal")))
        for proj in prog.projects:
            changes += _project(proj, prog.name, accounts, members, cluster, today)
    changes += _leftovers(guards, accounts, qos_rows, cluster)
    return changes


def _project(proj, programme: str, accounts, members, cluster: str, today) -> list[Change]:
    out = _account(proj.name, programme, accounts, cluster, f"{programme} project", programme)
    current = accounts.get(proj.name)
    minutes = proj.granted_minutes(today)
    if current is None or current.grp_tres_mins != {"gres/gpu": minutes}:
        why = "" if proj.active(today) else " (outside its validity period)"
        out.append(Change(
            f"set {proj.name} grant to {minutes / 60:g} GPU-hours{why}",
            ("modify", "account", "where", f"name={proj.name}", f"cluster={cluster}",
             "set", f"GrpTRESMins=gres/gpu={minutes}")))
    for user in proj.members:
        if (user, proj.name) not in members:
            out.append(Change(f"added {user} to {proj.name}",
                              ("add", "user", user, f"account={proj.name}",
                               f"cluster={cluster}")))
    for user, account in sorted(members):
        if account == proj.name and user not in proj.members:
            out.append(Change(f"removed {user} from {proj.name}",
                              ("delete", "user", "where", f"name={user}",
                               f"account={proj.name}", f"cluster={cluster}")))
    return out


def billed_types(nodes, weights: dict[str, dict[str, float]]) -> set[str]:
    """The GPU types (or "CPUs") a job's ``billing`` counts, partition by partition
    (``weights``: each partition's parsed ``TRESBillingWeights``)."""
    out = set()
    for n in nodes:
        for p in n.partitions:
            w = weights.get(p, {})
            if not w:
                out.add("CPUs")  # no weights: Slurm bills the CPUs
            elif n.gpu_type and w.get("gres/gpu", 0) > 0:
                out.add(n.gpu_type)
    return out


def check_billing(allocs: Allocations, gpu_type: str, nodes,
                  weights: dict[str, dict[str, float]]) -> None:
    """The guards count ``billing``: slurm.conf must bill one per GPU of the reserved type
    and nothing else, or the limits would mean something else."""
    billed = billed_types(nodes, weights)
    if billed != {gpu_type}:
        prog = allocs.reserving[0]
        raise AllocationError(
            f"{allocs.path}:{prog.reserve_line or 1}: programme {prog.name}: reserves "
            f"{gpu_type}, but Slurm bills {', '.join(sorted(billed)) or 'nothing'} "
            "(partitions' TRESBillingWeights); the guards count billing, so it must count the "
            f"{gpu_type} GPUs and nothing else (cluster/slurm.conf.j2: reserved_gpu_type)")


def _limit(name: str, gpus: int | None, gpu_type: str, accounts, cluster: str
           ) -> list[Change]:
    """The account's ``GrpTRES=billing=N`` (None: no limit)."""
    current = accounts.get(name)
    have = current.grp_tres.get("billing") if current else None
    if have == gpus:
        return []
    if gpus is None:
        return [Change(f"lifted the GPU limit of account {name}",
                       ("modify", "account", "where", f"name={name}", f"cluster={cluster}",
                        "set", "GrpTRES=billing=-1"))]
    return [Change(f"account {name} holds at most {gpus} {gpu_type} GPUs at once",
                   ("modify", "account", "where", f"name={name}", f"cluster={cluster}", "set",
                    f"GrpTRES={billing_limit(gpus)}"))]


def _account(name: str, parent: str, accounts, cluster: str, description: str,
             organization: str) -> list[Change]:
    current = accounts.get(name)
    if current is None:
        return [Change(f"added account {name} under {parent}",
                       ("add", "account", name, f"parent={parent}", f"cluster={cluster}",
                        f"description={description}", f"organization={organization}"))]
    if current.parent != parent:
        return [Change(f"moved account {name} under {parent}",
                       ("modify", "account", "where", f"name={name}", f"cluster={cluster}",
                        "set", f"parent={parent}"))]
    return []


def _leftovers(guards: Guards, accounts, qos_rows, cluster: str) -> list[Change]:
    """Guard accounts and QOS of an earlier layout (nothing runs under them any more)."""
    wanted = {p.name for p in guards.pools}
    out = []
    for name in sorted(accounts):
        if is_guard_name(name) and name not in wanted:
            out.append(Change(f"removed account {name} (no longer needed)",
                              ("delete", "account", "where", f"name={name}",
                               f"cluster={cluster}")))
    for name in sorted(qos_rows):
        if name.startswith(_OLD_QOS_PREFIXES):
            out.append(Change(f"removed QOS {name} (no longer needed)",
                              ("delete", "qos", "where", f"name={name}")))
    return out


def apply_plan(changes: list[Change], slurm: SlurmClient) -> list[str]:
    for change in changes:
        slurm.run(queries.sacctmgr_modify(*change.args))
    return [c.summary for c in changes]


def apply(allocs: Allocations, slurm: SlurmClient, cluster: str,
          today: dt.date | None = None) -> list[str]:
    """Make Slurm match ``allocs``; returns the changes made (none the second time)."""
    return apply_plan(plan(allocs, slurm, cluster, today), slurm)
