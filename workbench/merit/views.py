"""What each role sees: a proposal as the caller may see it (applicants never see reviewers'
names), the caller's own proposals and those she is to review, a call's ranking, and the
manager dashboard's summary. :class:`Views` is a base of :class:`~.office.Office`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..allocations import Allocations
from ..slurm.models import Node
from .ledger import MANAGERS, Caller, Ledger
from .model import MeritError, Proposal, State, now
from .store import MeritStore, assignments
from .store import reviews as review_rows

reviews_c = review_rows.c


class Views(Ledger):
    def visible(self, caller: Caller, p: Proposal) -> dict:
        """``p`` as ``caller`` may see it; 404 for anyone else. Reviews: a manager sees
        who wrote them, a reviewer only her own, the applicant and team none of the names
        (and only once decided)."""
        seats = self.store.assignments(assignments.c.proposal == p.id)
        seated = any(a.reviewer == caller.name and not a.conflict for a in seats)
        if not (caller.manager or caller.name in p.members or seated):
            raise MeritError(404, f"no proposal {p.id}", "proposal")
        out = p.to_json()
        call = self.store.call(p.call)
        done = [replace(r, score=call.score(r.scores))
                for r in self.store.reviews(reviews_c.proposal == p.id)]
        if caller.manager:
            out["reviews"] = [r.to_json() for r in done]
            out["assignments"] = [{"reviewer": a.reviewer, "conflict": a.conflict,
                                   "reason": a.reason} for a in seats]
        elif seated:
            out["reviews"] = [r.to_json() for r in done if r.reviewer == caller.name]
        elif p.state.final:
            out["reviews"] = [r.to_json(f"reviewer {i}") for i, r in enumerate(done, 1)]
        out["score"] = _mean([r.score for r in done])
        return out

    def mine(self, caller: Caller) -> dict:
        """The caller's proposals (applicant or team) and those she is to review."""
        own = [p for p in self.store.proposals() if caller.name in p.members]
        seats = self.store.assignments(assignments.c.reviewer == caller.name)
        reviewed = {r.proposal for r in self.store.reviews(reviews_c.reviewer == caller.name)}
        review = [{**self.visible(caller, self.store.proposal(a.proposal)),
                   "reviewed": a.proposal in reviewed}
                  for a in seats if not a.conflict]
        return {"proposals": [p.to_json() for p in own], "to_review": review}

    def ranking(self, caller: Caller, call_id: int) -> dict:
        """A call's proposals: a manager's ranking by weighted score; anyone else her own."""
        call = self.store.call(call_id)
        props = [p for p in self.store.of_call(call.id) if p.state is not State.DRAFT
                 or not caller.manager]
        if not caller.manager:
            return {"call": self.call_json(call),
                    "proposals": [p.to_json() for p in props if caller.name in p.members]}
        rows = []
        for p in props:
            done = self.store.reviews(reviews_c.proposal == p.id)
            rows.append({**p.to_json(), "reviews": len(done),
                         "score": _mean([call.score(r.scores) for r in done]),
                         "eligible": p.state is not State.NOT_ELIGIBLE})
        rows.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0), r["id"]))
        return {"call": self.call_json(call), "proposals": rows,
                "requested_gpu_hours": sum(p.gpu_hours for p in props),
                "share": self.share_left(call.programme, but=call.id)}

    def summary(self, caller: Caller) -> dict:
        """:meth:`report`, for managers."""
        self._must(caller.manager, "see the access summary", MANAGERS)
        return self.report()

    def report(self) -> dict:
        """The manager dashboard's Access page: calls (offered, awarded, proposals by state),
        proposals by state, hours from submission to decision, and each programme's share
        (granted, held by calls, left)."""
        every = self.store.proposals()
        allocs = self.allocs()
        calls = []
        for call in self.store.calls():
            mine = [p for p in every if p.call == call.id]
            calls.append({**self.call_json(call), "proposals_by_state": _by_state(mine),
                          "requested_gpu_hours": sum(p.gpu_hours for p in mine
                                                     if p.state is not State.DRAFT)})
        waits = sorted((dt.datetime.fromisoformat(p.decided_at) -
                        dt.datetime.fromisoformat(p.submitted_at)).total_seconds() / 3600
                       for p in every if p.decided_at and p.submitted_at)
        return {"calls": calls, "proposals_by_state": _by_state(every),
                "decision_hours": {"decided": len(waits),
                                   "median": round(waits[len(waits) // 2], 2) if waits else None,
                                   "longest": round(waits[-1], 2) if waits else None},
                "programmes": [self.share_left(p.name, allocs=allocs)
                               for p in allocs.programmes if p.share]}


@dataclass(kw_only=True)
class Reader(Views):
    """The views over ``store``: what the dashboards read (no step is taken here).
    ``allocations()``: the allocations in force; ``nodes()``: the machine's nodes."""

    store: MeritStore
    allocations: Callable[[], Allocations]
    nodes: Callable[[], list[Node]]
    clock: Callable[[], dt.datetime] = field(default=now)


def _by_state(props: list[Proposal]) -> dict[str, int]:
    out = {s.value: 0 for s in State}
    for p in props:
        out[p.state.value] += 1
    return out


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None
