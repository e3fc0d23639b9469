"""How reserved GPUs are guaranteed: group limits in Slurm's account tree.

A programme ``P`` that reserves ``R`` of the ``T`` GPUs of a type is guaranteed them while
everyone else together holds at most ``T - R``. That set, "everyone but P", is a *guard*: an
account between ``root`` and the other programmes with ``GrpTRES=billing=T-R``. Slurm checks
a job against every account above it, so no job of theirs starts past the limit, however it was
submitted, and the limit counts GPUs on whichever nodes they are: no node is fenced.

The limits are on ``billing``, not on ``gres/gpu:<type>``: slurm.conf bills one per GPU in the
partitions of the reserved type and nothing else, so a job's billing is its GPUs of that type
however it asks for them. Slurm does not count ``--gres=gpu:2`` (no type) against a typed limit.

With two reserving programmes, A (first in the file) and B, the tree is::

    root ── A                       (GrpTRES billing = R_A + y: A's reach)
         └─ guard-A                 (billing = T - R_A: keeps A's reservation free)
              ├─ B
              └─ unreserved         (billing = T - R_A - R_B - y: the other programmes)
                   └─ industry, ...

B's reservation is free because A and the others together hold at most
``(R_A + y) + (T - R_A - R_B - y) = T - R_B``. The ``T - R_A - R_B`` unreserved GPUs are split
between A's reach (``y``) and the others' by their shares. Nothing is lent: an idle reservation
stays free for its programme, and no job is ever preempted. A tree is one nesting, so it holds
the overlapping sets "all but A" and "all but B" only by giving A a fixed reach; a third
reserving programme would cost another fixed split, and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .model import Allocations, machine_gpu_hours

GUARD_PREFIX = "guard-"
UNRESERVED = "unreserved"
#: the most programmes that may reserve GPUs (see the module docstring)
MAX_RESERVING = 2


def guard_name(programme: str) -> str:
    return f"{GUARD_PREFIX}{programme}"


def is_guard_name(name: str) -> bool:
    return name.startswith(GUARD_PREFIX) or name == UNRESERVED


@dataclass(frozen=True)
class Pool:
    """A guard account: a parent whose programmes together hold at most ``limit`` GPUs."""

    name: str
    parent: str
    limit: int
    description: str


@dataclass(frozen=True)
class Guards:
    """The Slurm layout of the reservations (see the module docstring)."""

    gpu_type: str = ""                                  # the reserved (billed) GPU type
    total: int = 0                                      # the cluster's GPUs of that type
    pools: tuple[Pool, ...] = ()
    parent: Mapping[str, str] = field(default_factory=dict)       # programme -> parent
    cap: Mapping[str, int] = field(default_factory=dict)          # programme account limit
    may_hold: Mapping[str, int] = field(default_factory=dict)     # the most it holds at once
    kept_free_for: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    members: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # limit -> programmes

    def limit_of(self, programme: str) -> tuple[str, int, tuple[str, ...]] | None:
        """The tightest limit over ``programme``: (account, GPUs, programmes sharing it)."""
        options = []
        if programme in self.cap:
            options.append((programme, self.cap[programme], (programme,)))
        for pool in self.pools:
            if programme in self.members.get(pool.name, ()):
                options.append((pool.name, pool.limit, self.members[pool.name]))
        return min(options, key=lambda o: o[1]) if options else None


def billing_limit(gpus: int) -> str:
    """``GrpTRES`` text for a number of reserved-type GPUs."""
    return f"billing={int(gpus)}"


def plan_guards(allocs: Allocations, totals: Mapping[str, int]) -> Guards:
    """Where every programme goes in the tree and the limits (``totals``: GPUs per type)."""
    names = [p.name for p in allocs.programmes]
    parent = {n: "root" for n in names}
    reserving = allocs.reserving
    if not reserving:
        return Guards(parent=parent)
    if len(reserving) > MAX_RESERVING:
        raise ValueError(f"at most {MAX_RESERVING} programmes may reserve GPUs")
    gpu_type = reserving[0].reserves[0].gpu_type
    total = totals.get(gpu_type, 0)
    a = reserving[0]
    b = reserving[1] if len(reserving) > 1 else None
    r_a = a.reserved.get(gpu_type, 0)
    r_b = b.reserved.get(gpu_type, 0) if b else 0
    others = [n for n in names if n != a.name and (b is None or n != b.name)]
    guard_a = Pool(guard_name(a.name), "root", total - r_a,
                   f"everyone but {a.name}: keeps the {a.name} reservation free")
    free_for = {n: (a.name,) for n in names if n != a.name}
    free_for[a.name] = ()
    if b is None:
        for n in others:
            parent[n] = guard_a.name
        return Guards(gpu_type, total, (guard_a,), parent, {},
                      {n: guard_a.limit for n in others} | {a.name: total},
                      free_for, {guard_a.name: tuple(others)})

    unreserved_gpus = total - r_a - r_b
    y = unreserved_gpus if not others else _reach(allocs, a.name, others, gpu_type, totals,
                                                   unreserved_gpus)
    cap_a = r_a + y
    parent[b.name] = guard_a.name
    free_for[a.name] = (b.name,)
    free_for[b.name] = (a.name,)
    pools = [guard_a]
    members = {guard_a.name: (b.name, *others), a.name: (a.name,)}
    may_hold = {a.name: cap_a, b.name: guard_a.limit}
    if others:
        pools.append(Pool(UNRESERVED, guard_a.name, unreserved_gpus - y,
                          f"everyone but {a.name} and {b.name}: keeps both reservations free"))
        members[UNRESERVED] = tuple(others)
        for n in others:
            parent[n] = UNRESERVED
            free_for[n] = (a.name, b.name)
            may_hold[n] = unreserved_gpus - y
    return Guards(gpu_type, total, tuple(pools), parent, {a.name: cap_a}, may_hold, free_for,
                  members)


def _reach(allocs: Allocations, first: str, others: list[str], gpu_type: str,
           totals: Mapping[str, int], unreserved: int) -> int:
    """How many of the unreserved GPUs the first reserving programme may reach: the others
    get the rest. Split by the programmes' shares of the type (equally without shares)."""
    def share(name: str) -> float:
        prog = allocs.programme(name)
        if prog is None or prog.share is None or allocs.period is None:
            return 0.0
        return prog.share.gpu_hours(machine_gpu_hours(totals, allocs.period)).get(gpu_type, 0)

    mine, theirs = share(first), sum(share(n) for n in others)
    if mine + theirs <= 0:
        return unreserved // 2
    return int(round(unreserved * mine / (mine + theirs)))
