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

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ..allocations import AllocationError, Allocations
from ..allocations.awards import Award, AwardStore
from ..allocations.guards import is_guard_name
from ..allocations.loader import load
from ..allocations.model import gpu_totals, machine_gpu_hours
from ..audit import AuditLog
from ..slurm import SlurmError
from ..slurm.models import Node
from .model import (
    CRITERION_RE,
    MAX_ABSTRACT,
    MAX_REVIEWS,
    MAX_SCORE,
    MAX_TEXT,
    MIN_SCORE,
    ORG_TYPES,
    PROGRAMMES,
    PROJECT_RE,
    Call,
    CallState,
    Criterion,
    MeritError,
    Proposal,
    Review,
    State,
    choice,
    day,
    fields,
    iso,
    moment,
    names,
    now,
    number,
    text,
    whole,
)
from .store import MeritStore, assignments, proposals
from .store import reviews as review_rows

log = logging.getLogger(__name__)

#: the hub groups whose members manage calls and review proposals
MANAGERS, REVIEWERS = "managers", "reviewers"

_CALL_FIELDS = {"name", "programme", "gpu_type", "gpu_hours", "max_per_proposal", "opens",
                "closes", "eligibility", "criteria", "reviews_needed"}
_PROPOSAL_FIELDS = {"project", "organisation", "org_type", "abstract", "gpu_hours",
                    "gpu_type", "valid_from", "valid_until", "team", "datasets"}
_PENDING = (State.SUBMITTED, State.ELIGIBLE, State.IN_REVIEW, State.REVIEWED)


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


@dataclass
class Office:
    """The operations, over the ``store`` and the ``audit`` log.

    ``allocations()``: the allocations in force (the file and the awards of ``store``'s
    database); ``nodes()``: the machine's nodes (Slurm's); ``is_user(name)``: a user of the machine;
    ``datasets()``: the catalogue's dataset ids; ``reviewers()``: the members of the hub's
    reviewers group; ``enact()``: make Slurm and the datasets' access match the allocations
    in force (after an award; returns what it changed)."""

    store: MeritStore
    audit: AuditLog
    allocations: Callable[[], Allocations]
    nodes: Callable[[], list[Node]]
    is_user: Callable[[str], bool]
    datasets: Callable[[], Iterable[str]]
    reviewers: Callable[[], Iterable[str]]
    enact: Callable[[], list[str]]
    clock: Callable[[], dt.datetime] = now

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
                not any(p.state in _PENDING for p in props):
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

    # -- calls -------------------------------------------------------------------------
    def open_call(self, caller: Caller, body) -> Call:
        self._must(caller.manager, "open a call", MANAGERS)
        body = fields(body, _CALL_FIELDS, _CALL_FIELDS - {"reviews_needed"})
        allocs = self.allocs()
        programme = choice(body, "programme", PROGRAMMES)
        if allocs.programme(programme) is None:
            raise MeritError(400, f"programme {programme} is not in the allocations file",
                             "programme")
        gpu_type = text(body, "gpu_type", 20)
        if gpu_type not in self.gpus():
            raise MeritError(400, f"gpu_type {gpu_type!r} is not on this machine (it has "
                             f"{', '.join(sorted(self.gpus()))})", "gpu_type")
        hours = number(body, "gpu_hours")
        most = number(body, "max_per_proposal")
        if most > hours:
            raise MeritError(400, f"max_per_proposal {most:g} is more than the call offers "
                             f"({hours:g} GPU-hours)", "max_per_proposal")
        opens, closes = moment(body, "opens"), moment(body, "closes")
        if closes <= opens:
            raise MeritError(400, "closes must be after opens", "closes")
        if closes <= self.clock():
            raise MeritError(400, f"closes {iso(closes)} is in the past", "closes")
        eligibility = names(body, "eligibility", _ORG_RE)
        bad = [e for e in eligibility if e not in ORG_TYPES]
        if bad or not eligibility:
            raise MeritError(400, f"eligibility must list organisation types of "
                             f"{', '.join(ORG_TYPES)}", "eligibility")
        criteria = _criteria(body.get("criteria"))
        reviews_needed = whole(body, "reviews_needed", 1, MAX_REVIEWS) \
            if "reviews_needed" in body else 2
        call = Call(0, text(body, "name"), programme, gpu_type, hours, most, opens, closes,
                    eligibility, criteria, reviews_needed, caller.name, iso(self.clock()))
        with self.store.transaction() as conn:
            left = self.share_left(programme, conn=conn, allocs=allocs)
            if hours > left["left_gpu_hours"] + 1e-6:
                raise MeritError(400, f"gpu_hours {hours:g} is more than programme "
                                 f"{programme}'s share has left: {left['left_gpu_hours']:g} "
                                 f"GPU-hours (share {left['share_gpu_hours']:g}, granted "
                                 f"{left['granted_gpu_hours']:g}, held by open calls "
                                 f"{left['held_by_calls']:g})", "gpu_hours")
            call = replace(call, id=self.store.add_call(conn, call))
        self.audit.record(caller.name, "access.call.open", f"call/{call.id}",
                          name=call.name, programme=programme, gpu_hours=hours,
                          closes=iso(closes))
        return call

    def call_json(self, call: Call) -> dict:
        out = call.to_json(self.clock())
        out["awarded_gpu_hours"] = self._awarded_in(call)
        out["left_gpu_hours"] = max(0.0, call.gpu_hours - out["awarded_gpu_hours"])
        return out

    # -- proposals ---------------------------------------------------------------------
    def new_proposal(self, caller: Caller, call_id: int, body) -> Proposal:
        call = self.store.call(call_id)
        self._open(call)
        draft = self._checked(Proposal(0, call.id, caller.name, created_at=iso(self.clock())),
                              call, body)
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
            p = self._checked(p, call, body)
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

    def _checked(self, p: Proposal, call: Call, body) -> Proposal:
        """``p`` with the fields of ``body``, each checked as it is given (a draft may lack
        some; :meth:`submit` requires them)."""
        body = fields(body, _PROPOSAL_FIELDS)
        given = {}
        if "project" in body:
            project = text(body, "project", 63)
            if not PROJECT_RE.match(project) or project == "root" or is_guard_name(project):
                raise MeritError(400, f"project {project!r} must be a valid Slurm account "
                                 "name: lower-case letters, digits, '-' or '_', starting with "
                                 "a letter, at most 63 (not root, guard-*, unreserved)",
                                 "project")
            given["project"] = project
        if "organisation" in body:
            given["organisation"] = text(body, "organisation")
        if "org_type" in body:
            org_type = choice(body, "org_type", ORG_TYPES)
            if org_type not in call.eligibility:
                raise MeritError(400, f"org_type {org_type} is not eligible for call "
                                 f"{call.name} (eligible: {', '.join(call.eligibility)})",
                                 "org_type")
            given["org_type"] = org_type
        if "abstract" in body:
            given["abstract"] = text(body, "abstract", MAX_ABSTRACT)
        if "gpu_hours" in body:
            hours = number(body, "gpu_hours")
            if hours > call.max_per_proposal:
                raise MeritError(400, f"gpu_hours {hours:g} is over the call's maximum of "
                                 f"{call.max_per_proposal:g} per proposal", "gpu_hours")
            given["gpu_hours"] = hours
        if "gpu_type" in body and body["gpu_type"] != call.gpu_type:
            raise MeritError(400, f"gpu_type must be the call's, {call.gpu_type}", "gpu_type")
        given["gpu_type"] = call.gpu_type
        for name in ("valid_from", "valid_until"):
            if name in body:
                given[name] = day(body, name)
        start = given.get("valid_from", p.valid_from)
        end = given.get("valid_until", p.valid_until)
        if start and end and end < start:
            raise MeritError(400, "valid_until is before valid_from", "valid_until")
        if "team" in body:
            team = names(body, "team")
            missing = [m for m in team if not self.is_user(m)]
            if missing:
                raise MeritError(400, f"team member {missing[0]!r} is no user of this "
                                 "machine", "team")
            given["team"] = tuple(m for m in team if m != p.applicant)
        if "datasets" in body:
            wanted = names(body, "datasets", _DATASET_RE)
            known = set(self.datasets())
            unknown = [d for d in wanted if d not in known]
            if unknown:
                raise MeritError(400, f"dataset {unknown[0]!r} is not in the catalogue",
                                 "datasets")
            given["datasets"] = wanted
        return replace(p, **given)

    def _check_whole(self, p: Proposal, call: Call, conn) -> None:
        """What only the whole proposal can show: a project name no grant and no other
        proposal has."""
        allocs = self.allocs()
        if allocs.project(p.project) or allocs.programme(p.project):
            raise MeritError(409, f"project {p.project} exists already; choose another name",
                             "project")
        rivals = self.store.proposals(proposals.c.project == p.project,
                                      proposals.c.id != p.id, conn=conn)
        if any(r.state in (*_PENDING, State.AWARDED) for r in rivals):
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
            scores = _scores(body.get("scores"), call)
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
            if decision == "not-eligible" and p.state in _PENDING:
                p = replace(p, state=State.NOT_ELIGIBLE,
                            reason=text(body, "reason", MAX_TEXT))
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
        left = self.share_left(call.programme, but=call.id, conn=conn, allocs=allocs)
        if hours > left["left_gpu_hours"] + 1e-6:
            raise MeritError(400, f"gpu_hours {hours:g} is more than programme "
                             f"{call.programme}'s share has left: {left['left_gpu_hours']:g} "
                             "GPU-hours", "gpu_hours")
        start = day(body, "valid_from") if "valid_from" in body else p.valid_from
        end = day(body, "valid_until") if "valid_until" in body else p.valid_until
        if start and end and end < start:
            raise MeritError(400, "valid_until is before valid_from", "valid_until")
        missing = [m for m in p.members if not self.is_user(m)]
        if missing:
            raise MeritError(400, f"{missing[0]} has no account on this machine: a project's "
                             "members must have one", "team")
        award = Award(p.project, call.programme, p.members, hours, start, end, p.datasets,
                      p.id, caller.name, iso(self.clock()))
        try:  # the loader's own checks, with the new award beside those in force
            load(allocs.path, check_users=False, nodes=self.nodes(),
                 awards=[*AwardStore(self.store.path).awards(), award])
        except AllocationError as e:
            raise MeritError(400, f"the award is refused: {e}", "gpu_hours") from e
        award_id = AwardStore.insert(conn, award)
        return replace(p, state=State.AWARDED, awarded_hours=hours, award=award_id,
                       valid_from=start, valid_until=end)

    # -- views -------------------------------------------------------------------------
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
        """The manager dashboard's Access page: calls (offered, awarded, proposals by state),
        proposals by state, hours from submission to decision, and each programme's share
        (granted, held by calls, left)."""
        self._must(caller.manager, "see the access summary", MANAGERS)
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

    # -- helpers -----------------------------------------------------------------------
    @staticmethod
    def _must(allowed: bool, what: str, group: str) -> None:
        if not allowed:
            raise MeritError(403, f"only the hub's {group} group may {what}", "user")

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
_ORG_RE = re.compile(r"^[a-z-]{1,40}$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def _by_state(props: list[Proposal]) -> dict[str, int]:
    out = {s.value: 0 for s in State}
    for p in props:
        out[p.state.value] += 1
    return out


def _norm(organisation: str) -> str:
    return " ".join(organisation.lower().split())


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _criteria(raw) -> tuple[Criterion, ...]:
    usage = ("criteria must be a list of {name, weight}: names of lower-case letters, weights "
             "> 0, e.g. [{\"name\": \"excellence\", \"weight\": 2}]")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 10:
        raise MeritError(400, usage, "criteria")
    out = []
    for c in raw:
        if not isinstance(c, dict) or set(c) != {"name", "weight"} or \
                not isinstance(c["name"], str) or not CRITERION_RE.match(c["name"]):
            raise MeritError(400, usage, "criteria")
        out.append(Criterion(c["name"], number(c, "weight", 0, 100)))
    if len({c.name for c in out}) != len(out):
        raise MeritError(400, "criteria names must differ", "criteria")
    return tuple(out)


def _scores(raw, call: Call) -> dict[str, int]:
    wanted = [c.name for c in call.criteria]
    if not isinstance(raw, dict) or set(raw) != set(wanted):
        raise MeritError(400, f"scores must score each criterion: {', '.join(wanted)}",
                         "scores")
    for name in wanted:
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or \
                not MIN_SCORE <= value <= MAX_SCORE:
            raise MeritError(400, f"scores: {name} must be a whole number from {MIN_SCORE} "
                             f"to {MAX_SCORE}, not {value!r}", "scores")
    return {name: raw[name] for name in wanted}

