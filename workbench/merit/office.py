"""The access office: every step of merit review, its rules and its audit record.

A manager opens a call (within what the programme's share has left); anyone applies (drafts,
then submits before the cut-off); submission checks eligibility and assigns reviewers (never
one of the applicant's organisation or team); a reviewer declares a conflict (another
reviewer takes her place) or scores each criterion; a manager awards (the project is an
award in the allocations, applied to Slurm at once by ``enact``) or rejects with a reason.

Who may do what comes from the caller's hub groups (``managers``, ``reviewers``; a hub
admin counts as a manager), as the hub gives them to the service; the office only reads
them. Every refusal is a :class:`~.model.MeritError` naming the field, and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..allocations import AllocationError, Allocations
from ..allocations.awards import AwardStore
from ..allocations.loader import load
from ..allocations.model import Award, Project
from ..audit import AuditLog
from ..slurm import SlurmError
from .forms import call_form, proposal_form, scores_form
from .ledger import MANAGERS, PENDING, REVIEWERS, Caller
from .model import (
    MAX_TEXT,
    Call,
    CallState,
    MeritError,
    Proposal,
    Review,
    State,
    choice,
    day,
    fields,
    iso,
    number,
    text,
)
from .store import assignments, proposals
from .store import reviews as review_rows
from .views import Reader

log = logging.getLogger(__name__)


_CALL_FIELDS = {"name", "programme", "gpu_type", "gpu_hours", "max_per_proposal", "opens",
                "closes", "eligibility", "criteria", "reviews_needed"}
_PROPOSAL_FIELDS = {"project", "organisation", "org_type", "abstract", "gpu_hours",
                    "gpu_type", "valid_from", "valid_until", "team", "datasets"}


@dataclass(frozen=True)
class Decided:
    """A decision: the proposal, what changed in Slurm and the datasets' access (an award),
    and why Slurm was not changed, if it was not."""

    proposal: Proposal
    changes: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict:
        return {**self.proposal.to_json(), "slurm": self.changes,
                "slurm_error": self.error or None}


@dataclass(kw_only=True)
class Office(Reader):
    """The operations, over the ``store`` and the ``audit`` log (and :class:`~.views.Reader`'s
    ``allocations``, ``nodes`` and ``clock``).

    ``is_user(name)``: a user of the machine; ``datasets()``: the catalogue's dataset ids;
    ``reviewers()``: the members of the hub's reviewers group; ``enact()``: make Slurm and
    the datasets' access match the allocations in force (after an award; returns what it
    changed)."""

    audit: AuditLog
    is_user: Callable[[str], bool]
    datasets: Callable[[], Iterable[str]]
    reviewers: Callable[[], Iterable[str]]
    enact: Callable[[], list[str]]

    # -- calls -------------------------------------------------------------------------
    def open_call(self, caller: Caller, body) -> Call:
        self._must(caller.manager, "open a call", MANAGERS)
        allocs = self.allocs()
        call = call_form(body, allocs, self.gpus(), self.clock(), caller.name)
        programme, hours, closes = call.programme, call.gpu_hours, call.closes
        with self.store.transaction() as conn:
            self.within_share(hours, programme, conn=conn, allocs=allocs)
            call = replace(call, id=self.store.add_call(conn, call))
        self.audit.record(caller.name, "access.call.open", f"call/{call.id}",
                          name=call.name, programme=programme, gpu_hours=hours,
                          closes=iso(closes))
        return call

    # -- proposals ---------------------------------------------------------------------
    def new_proposal(self, caller: Caller, call_id: int, body) -> Proposal:
        call = self.store.call(call_id)
        self._open(call)
        draft = proposal_form(Proposal(0, call.id, caller.name, created_at=iso(self.clock())),
                              call, body, self.is_user, self.datasets)
        with self.store.transaction() as conn:
            draft = replace(draft, id=self.store.add_proposal(conn, draft))
        self.audit.record(caller.name, "access.proposal.draft", f"proposal/{draft.id}",
                          call=call.id, project=draft.project)
        return draft

    def edit_proposal(self, caller: Caller, proposal_id: int, body) -> Proposal:
        with self.store.transaction() as conn:
            p = self._own_draft(caller, proposal_id, conn, "edit")
            call = self.store.call(p.call, conn)
            self._open(call)
            p = proposal_form(p, call, body, self.is_user, self.datasets)
            self.store.save_proposal(conn, p)
        self.audit.record(caller.name, "access.proposal.edit", f"proposal/{p.id}",
                          project=p.project)
        return p

    def submit(self, caller: Caller, proposal_id: int) -> Proposal:
        with self.store.transaction() as conn:
            p = self._own_draft(caller, proposal_id, conn, "submit")
            call = self.store.call(p.call, conn)
            self._open(call)
            for name in ("project", "organisation", "org_type", "abstract", "gpu_hours"):
                if not getattr(p, name):
                    raise MeritError(400, f"{name} is required before submitting", name)
            self._check_whole(p, call, conn)
            at = iso(self.clock())
            p = replace(p, state=State.SUBMITTED, submitted_at=at)
            self.store.save_proposal(conn, p)
            p = replace(p, state=State.ELIGIBLE)  # every eligibility rule was checked above
            chosen = self._assign(conn, p, call, set())
            p = replace(p, state=State.IN_REVIEW)
            self.store.save_proposal(conn, p)
        self.audit.record(caller.name, "access.proposal.submit", f"proposal/{p.id}",
                          call=call.id, project=p.project, gpu_hours=p.gpu_hours)
        self.audit.record("access", "access.proposal.eligible", f"proposal/{p.id}")
        for reviewer in chosen:
            self.audit.record("access", "access.review.assign", f"proposal/{p.id}",
                              reviewer=reviewer)
        return p

    def _check_whole(self, p: Proposal, call: Call, conn) -> None:
        """What only the whole proposal can show: a project name no grant and no other
        proposal has."""
        allocs = self.allocs()
        if allocs.project(p.project) or allocs.programme(p.project):
            raise MeritError(409, f"project {p.project} exists already; choose another name",
                             "project")
        rivals = self.store.proposals(proposals.c.project == p.project,
                                      proposals.c.id != p.id, conn=conn)
        if any(r.state in (*PENDING, State.AWARDED) for r in rivals):
            raise MeritError(409, f"project {p.project} is the name of another proposal; "
                             "choose another", "project")

    def _assign(self, conn, p: Proposal, call: Call, taken: set[str]) -> list[str]:
        """Assign reviewers until ``call.reviews_needed`` are on ``p`` (those not in conflict),
        least loaded first; never the applicant, a team member, one of the applicant's
        organisation, or anyone assigned before."""
        every = self.store.assignments(conn=conn)
        mine = [a for a in every if a.proposal == p.id]
        seated = sum(1 for a in mine if not a.conflict)
        orgs = self.store.organisations(conn)
        load_of: dict[str, int] = {}
        for a in every:
            if not a.conflict:
                load_of[a.reviewer] = load_of.get(a.reviewer, 0) + 1
        excluded = {*p.members, *(a.reviewer for a in mine), *taken}
        candidates = sorted((r for r in set(self.reviewers())
                             if r not in excluded and
                             _norm(orgs.get(r, "")) != _norm(p.organisation)),
                            key=lambda r: (load_of.get(r, 0), r))
        chosen = candidates[:max(0, call.reviews_needed - seated)]
        for reviewer in chosen:
            self.store.assign(conn, p.id, reviewer, iso(self.clock()))
        return chosen

    # -- reviews (a reviewer joins by declaring her organisation: the proposals waiting
    # for a reviewer come to her then) --------------------------------------------------
    def set_organisation(self, caller: Caller, body) -> str:
        self._must(caller.reviewer, "declare a reviewer's organisation", REVIEWERS)
        body = fields(body, {"organisation"}, {"organisation"})
        organisation = text(body, "organisation")
        with self.store.transaction() as conn:
            self.store.set_organisation(conn, caller.name, organisation)
            seated = self._top_up(conn)
        self.audit.record(caller.name, "access.reviewer.organisation", caller.name,
                          organisation=organisation)
        for pid, reviewer in seated:
            self.audit.record("access", "access.review.assign", f"proposal/{pid}",
                              reviewer=reviewer)
        return organisation

    def _top_up(self, conn) -> list[tuple[int, str]]:
        """Seat reviewers on proposals in review that have fewer than their call needs (none
        was free when they were submitted): (proposal, reviewer) for each seat given."""
        out = []
        for p in self.store.proposals(proposals.c.state == State.IN_REVIEW.value, conn=conn):
            out += [(p.id, r) for r in self._assign(conn, p, self.store.call(p.call, conn),
                                                   set())]
        return out

    def conflict(self, caller: Caller, proposal_id: int, body) -> list[str]:
        body = fields(body, {"reason"})
        reason = text(body, "reason", MAX_TEXT, required=False)
        with self.store.transaction() as conn:
            p = self.store.proposal(proposal_id, conn, lock=True)
            self._seat(caller, p, conn)
            self.store.conflict(conn, p.id, caller.name, reason)
            chosen = self._assign(conn, p, self.store.call(p.call, conn), set())
        self.audit.record(caller.name, "access.review.conflict", f"proposal/{p.id}",
                          reason=reason)
        for reviewer in chosen:
            self.audit.record("access", "access.review.assign", f"proposal/{p.id}",
                              reviewer=reviewer)
        return chosen

    def review(self, caller: Caller, proposal_id: int, body) -> Review:
        body = fields(body, {"scores", "comment"}, {"scores"})
        with self.store.transaction() as conn:
            p = self.store.proposal(proposal_id, conn, lock=True)
            self._seat(caller, p, conn)
            call = self.store.call(p.call, conn)
            scores = scores_form(body.get("scores"), call)
            review = Review(p.id, caller.name, scores,
                            text(body, "comment", MAX_TEXT, required=False), iso(self.clock()),
                            call.score(scores))
            self.store.add_review(conn, review)
            done = self.store.reviews(reviews_c.proposal == p.id, conn=conn)
            if len(done) >= call.reviews_needed:
                self.store.save_proposal(conn, replace(p, state=State.REVIEWED))
        self.audit.record(caller.name, "access.review.score", f"proposal/{p.id}",
                          score=round(review.score, 3))
        return review

    def _seat(self, caller: Caller, p: Proposal, conn) -> None:
        """``caller`` holds a seat on ``p``'s review: assigned, no conflict, no review yet."""
        seat = self.store.assignments(assignments.c.proposal == p.id,
                                      assignments.c.reviewer == caller.name, conn=conn)
        if not seat or seat[0].conflict:
            raise MeritError(403, f"{caller.name} is not assigned to review proposal {p.id}",
                             "reviewer")
        if self.store.reviews(reviews_c.proposal == p.id, reviews_c.reviewer == caller.name,
                              conn=conn):
            raise MeritError(409, f"{caller.name} has reviewed proposal {p.id} already",
                             "reviewer")
        if p.state not in (State.IN_REVIEW, State.REVIEWED):
            raise MeritError(409, f"proposal {p.id} is {p.state.value}, not in review",
                             "state")

    # -- decisions ---------------------------------------------------------------------
    def decide(self, caller: Caller, proposal_id: int, body) -> Decided:
        """Award or reject (or find not eligible); an award is added to the allocations and
        ``enact`` applies it to Slurm at once. When Slurm cannot be changed now, the award
        stands (it is in the allocations) and the answer says so: the next ``allocations
        apply`` (or the service's start, or the next award) applies it."""
        self._must(caller.manager, "decide on a proposal", MANAGERS)
        body = fields(body, {"decision", "gpu_hours", "valid_from", "valid_until", "reason"},
                      {"decision"})
        decision = choice(body, "decision", ("award", "reject", "not-eligible"))
        allocs = self.allocs()
        with self.store.transaction() as conn:
            p = self.store.proposal(proposal_id, conn, lock=True)
            if decision == "not-eligible" and p.state in PENDING:
                p = replace(p, state=State.NOT_ELIGIBLE,
                            reason=text(body, "reason", MAX_TEXT))
            elif p.state.final:
                raise MeritError(409, f"proposal {p.id} was decided already: "
                                 f"{p.state.value}", "state")
            elif p.state is not State.REVIEWED:
                raise MeritError(409, f"proposal {p.id} is {p.state.value}: a decision comes "
                                 "after its reviews", "state")
            elif decision == "reject":
                p = replace(p, state=State.REJECTED, reason=text(body, "reason", MAX_TEXT))
            else:
                p = self._award(caller, p, body, allocs, conn)
            p = replace(p, decided_at=iso(self.clock()), decided_by=caller.name)
            self.store.save_proposal(conn, p)
        self.audit.record(caller.name, f"access.decision.{decision}", f"proposal/{p.id}",
                          project=p.project, gpu_hours=p.awarded_hours, reason=p.reason)
        if p.state is not State.AWARDED:
            return Decided(p)
        try:
            changes = self.enact()
        except (SlurmError, AllocationError, OSError) as e:
            log.error("award %s (%s) not applied to Slurm yet: %s", p.award, p.project, e)
            self.audit.record(caller.name, "access.award.pending", f"proposal/{p.id}",
                              project=p.project, error=str(e)[:500])
            return Decided(p, error=f"The award is recorded, but Slurm could not be changed "
                           f"now ({str(e)[:300]}); it is applied at the next `workbench "
                           "allocations apply` or award.")
        self.audit.record(caller.name, "access.award.applied", f"proposal/{p.id}",
                          project=p.project, changes=changes)
        return Decided(p, changes)

    def _award(self, caller: Caller, p: Proposal, body, allocs: Allocations,
               conn) -> Proposal:
        hours = number(body, "gpu_hours")
        if hours > p.gpu_hours:
            raise MeritError(400, f"gpu_hours {hours:g} is more than requested "
                             f"({p.gpu_hours:g})", "gpu_hours")
        call = self.store.call(p.call, conn)
        call_left = call.gpu_hours - self._awarded_in(call, conn)
        if hours > call_left + 1e-6:
            raise MeritError(400, f"gpu_hours {hours:g} is more than call {call.name} has "
                             f"left: {call_left:g} GPU-hours", "gpu_hours")
        self.within_share(hours, call.programme, but=call.id, conn=conn, allocs=allocs)
        start = day(body, "valid_from") if "valid_from" in body else p.valid_from
        end = day(body, "valid_until") if "valid_until" in body else p.valid_until
        if start and end and end < start:
            raise MeritError(400, "valid_until is before valid_from", "valid_until")
        missing = [m for m in p.members if not self.is_user(m)]
        if missing:
            raise MeritError(400, f"{missing[0]} has no account on this machine: a project's "
                             "members must have one", "team")
        award = Award(Project(p.project, call.programme, p.members, hours, start, end,
                              datasets=p.datasets), p.id, caller.name, iso(self.clock()))
        try:  # the loader's own checks, with the new award beside those in force
            load(allocs.path, check_users=False, nodes=self.nodes(),
                 awards=[*AwardStore(self.store.path).awards(), award])
        except AllocationError as e:
            raise MeritError(400, f"the award is refused: {e}", "gpu_hours") from e
        award_id = AwardStore.insert(conn, award)
        return replace(p, state=State.AWARDED, awarded_hours=hours, award=award_id,
                       valid_from=start, valid_until=end)

    # -- helpers -----------------------------------------------------------------------
    def _open(self, call: Call) -> None:
        state = call.state(self.clock())
        if state is not CallState.OPEN:
            when = f"closed at {iso(call.closes)}" if state is CallState.CLOSED \
                else f"opens at {iso(call.opens)}"
            raise MeritError(400, f"call {call.name} is {state.value}: it {when}", "call")

    def _own_draft(self, caller: Caller, proposal_id: int, conn, what: str) -> Proposal:
        p = self.store.proposal(proposal_id, conn, lock=True)
        if p.applicant != caller.name:
            raise MeritError(404 if caller.name not in p.members else 403,
                             f"only {p.applicant} may {what} proposal {p.id}", "proposal")
        if p.state is not State.DRAFT:
            raise MeritError(409, f"proposal {p.id} is {p.state.value}: only a draft may be "
                             f"{'edited' if what == 'edit' else 'submitted'}", "state")
        return p


reviews_c = review_rows.c


def _norm(organisation: str) -> str:
    return " ".join(organisation.lower().split())
