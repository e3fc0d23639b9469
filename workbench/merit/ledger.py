"""What a programme's share has left and what a call has given: the share arithmetic of
merit review (the same as the allocations loader's and ``workbench allocations show``: the
programme's share of the machine in the period, less its grants, file and awards alike), and
who the caller is.

:class:`Ledger` is a base of :class:`~.office.Office`: it reads ``store``, ``allocations``,
``nodes`` and ``clock`` from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..allocations import AllocationError, Allocations
from ..allocations.model import gpu_totals, machine_gpu_hours
from .model import Call, CallState, MeritError, State

#: the hub groups whose members manage calls and review proposals
MANAGERS, REVIEWERS = "managers", "reviewers"
#: a proposal waiting for a decision
PENDING = (State.SUBMITTED, State.ELIGIBLE, State.IN_REVIEW, State.REVIEWED)


@dataclass(frozen=True)
class Caller:
    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False

    @property
    def manager(self) -> bool:
        return self.admin or MANAGERS in self.groups

    @property
    def reviewer(self) -> bool:
        return REVIEWERS in self.groups


class Ledger:
    def allocs(self) -> Allocations:
        """:attr:`allocations`, or a 503 while they are unusable (nothing is decided then)."""
        try:
            return self.allocations()
        except AllocationError as e:
            raise MeritError(503, f"the allocations are unusable ({e}); ask the centre's "
                             "operators") from e

    def gpus(self) -> dict[str, int]:
        return gpu_totals(self.nodes())

    # -- shares ------------------------------------------------------------------------
    def _share(self, allocs: Allocations, programme: str) -> float:
        prog = allocs.programme(programme)
        if prog is None or prog.share is None or allocs.period is None:
            return 0.0
        machine = machine_gpu_hours(self.gpus(), allocs.period)
        return sum(prog.share.gpu_hours(machine).values())

    @staticmethod
    def _granted(allocs: Allocations, programme: str) -> float:
        prog = allocs.programme(programme)
        period = allocs.period
        return sum(p.gpu_hours for p in (prog.projects if prog else ())
                   if period is None or period.overlaps(p.valid_from, p.valid_until))

    def _awarded_in(self, call: Call, conn=None) -> float:
        return sum(p.awarded_hours for p in self.store.of_call(call.id, conn)
                   if p.state is State.AWARDED)

    def _outstanding(self, call: Call, conn=None) -> float:
        """What a call still holds of its programme's share: its offer less its awards, while
        it is not closed or has proposals waiting for a decision."""
        props = self.store.of_call(call.id, conn)
        if call.state(self.clock()) is CallState.CLOSED and \
                not any(p.state in PENDING for p in props):
            return 0.0
        return max(0.0, call.gpu_hours - sum(p.awarded_hours for p in props
                                             if p.state is State.AWARDED))

    def share_left(self, programme: str, but: int = 0, conn=None,
                   allocs: Allocations | None = None) -> dict:
        """The programme's share, granted (file and awards), held by open calls (other than
        call ``but``), and left, in GPU-hours."""
        allocs = allocs or self.allocs()
        share, granted = self._share(allocs, programme), self._granted(allocs, programme)
        held = sum(self._outstanding(c, conn) for c in self.store.calls(conn)
                   if c.programme == programme and c.id != but)
        return {"programme": programme, "share_gpu_hours": round(share, 2),
                "granted_gpu_hours": round(granted, 2), "held_by_calls": round(held, 2),
                "left_gpu_hours": round(max(0.0, share - granted - held), 2)}

    def within_share(self, hours: float, programme: str, but: int = 0, conn=None,
                     allocs: Allocations | None = None) -> None:
        """A 400 naming ``gpu_hours``, with what is left, when ``hours`` are more than
        :meth:`share_left`."""
        left = self.share_left(programme, but, conn, allocs)
        if hours > left["left_gpu_hours"] + 1e-6:
            raise MeritError(400, f"gpu_hours {hours:g} is more than the share of programme "
                             f"{programme} has left: {left['left_gpu_hours']:g} GPU-hours "
                             f"(share {left['share_gpu_hours']:g}, granted "
                             f"{left['granted_gpu_hours']:g}, held by open calls "
                             f"{left['held_by_calls']:g})", "gpu_hours")

    def call_json(self, call: Call) -> dict:
        out = call.to_json(self.clock())
        out["awarded_gpu_hours"] = self._awarded_in(call)
        out["left_gpu_hours"] = max(0.0, call.gpu_hours - out["awarded_gpu_hours"])
        return out

    @staticmethod
    def _must(allowed: bool, what: str, group: str) -> None:
        if not allowed:
            raise MeritError(403, f"only the hub's {group} group may {what}", "user")
