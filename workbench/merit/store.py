"""Calls, proposals, reviewers' assignments and reviews in the workbench's database (the
merit database, :attr:`workbench.paths.FactoryHome.merit_db`: a site's PostgreSQL or
``hub/merit.sqlite``), through :mod:`workbench.db`; the awards they lead to are the
allocations' table (:mod:`workbench.allocations.awards`) in the same database, written in
the decision's transaction.

Times are ISO text (UTC), lists JSON text, as the other stores keep them.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection

from .. import db
from ..allocations.awards import AwardStore
from .model import MAX_ID, Assignment, Call, Criterion, MeritError, Proposal, Review, State

_metadata = MetaData()
calls = Table(
    "merit_calls", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("programme", Text, nullable=False),
    Column("gpu_type", Text, nullable=False),
    Column("gpu_hours", Float, nullable=False),
    Column("max_per_proposal", Float, nullable=False),
    Column("opens", Text, nullable=False),
    Column("closes", Text, nullable=False),
    Column("eligibility", Text, nullable=False),
    Column("criteria", Text, nullable=False),
    Column("reviews_needed", Integer, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    sqlite_autoincrement=True,
)
proposals = Table(
    "merit_proposals", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call", Integer, ForeignKey("merit_calls.id"), nullable=False),
    Column("applicant", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("organisation", Text, nullable=False),
    Column("org_type", Text, nullable=False),
    Column("abstract", Text, nullable=False),
    Column("gpu_hours", Float, nullable=False),
    Column("gpu_type", Text, nullable=False),
    Column("valid_from", Date),
    Column("valid_until", Date),
    Column("team", Text, nullable=False),
    Column("datasets", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("submitted_at", Text, nullable=False),
    Column("decided_at", Text, nullable=False),
    Column("decided_by", Text, nullable=False),
    Column("awarded_hours", Float, nullable=False),
    Column("award", Integer, nullable=False),
    sqlite_autoincrement=True,
)
assignments = Table(
    "merit_assignments", _metadata,
    Column("proposal", Integer, ForeignKey("merit_proposals.id"), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("conflict", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Text, nullable=False),
    UniqueConstraint("proposal", "reviewer"),
)
reviews = Table(
    "merit_reviews", _metadata,
    Column("proposal", Integer, ForeignKey("merit_proposals.id"), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("scores", Text, nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", Text, nullable=False),
    UniqueConstraint("proposal", "reviewer"),
)
reviewers = Table(
    "merit_reviewers", _metadata,
    Column("name", Text, primary_key=True),
    Column("organisation", Text, nullable=False),
)
_c, _p, _a, _r = calls.c, proposals.c, assignments.c, reviews.c


def _call(r) -> Call:
    return Call(r.id, r.name, r.programme, r.gpu_type, r.gpu_hours, r.max_per_proposal,
                dt.datetime.fromisoformat(r.opens), dt.datetime.fromisoformat(r.closes),
                tuple(json.loads(r.eligibility)),
                tuple(Criterion(c["name"], c["weight"]) for c in json.loads(r.criteria)),
                r.reviews_needed, r.created_by, r.created_at)


def _proposal(r) -> Proposal:
    return Proposal(r.id, r.call, r.applicant, r.project, r.organisation, r.org_type,
                    r.abstract, r.gpu_hours, r.gpu_type, r.valid_from, r.valid_until,
                    tuple(json.loads(r.team)), tuple(json.loads(r.datasets)), State(r.state),
                    r.reason, r.created_at, r.submitted_at, r.decided_at, r.decided_by,
                    r.awarded_hours, r.award)


def _columns(p: Proposal) -> dict:
    return {"call": p.call, "applicant": p.applicant, "project": p.project,
            "organisation": p.organisation, "org_type": p.org_type, "abstract": p.abstract,
            "gpu_hours": p.gpu_hours, "gpu_type": p.gpu_type, "valid_from": p.valid_from,
            "valid_until": p.valid_until, "team": json.dumps(list(p.team)),
            "datasets": json.dumps(list(p.datasets)), "state": p.state.value,
            "reason": p.reason, "created_at": p.created_at, "submitted_at": p.submitted_at,
            "decided_at": p.decided_at, "decided_by": p.decided_by,
            "awarded_hours": p.awarded_hours, "award": p.award}


class MeritStore(db.Store):
    """The tables of merit review; reads return values of :mod:`.model`, writes take a
    connection of :meth:`transaction` so that a step and its consequences (a decision and
    its award) are one transaction."""

    metadata = _metadata

    def transaction(self):
        """A write transaction; on SQLite it takes the database's write lock at once, so a
        check made in it still holds when it writes (PostgreSQL: an advisory lock)."""
        AwardStore(self.path).engine  # noqa: B018  the awards table exists in this database
        return _Transaction(self.engine)

    # -- reads
    def calls(self, conn: Connection | None = None) -> list[Call]:
        return [_call(r) for r in self._rows(select(calls).order_by(_c.id), conn)]

    def call(self, call_id: int, conn: Connection | None = None) -> Call:
        found = self._rows(select(calls).where(_c.id == call_id), conn) \
            if 0 < call_id <= MAX_ID else []
        if not found:
            raise MeritError(404, f"no call {call_id}", "call")
        return _call(found[0])

    def proposals(self, *where, conn: Connection | None = None) -> list[Proposal]:
        return [_proposal(r) for r in
                self._rows(select(proposals).where(*where).order_by(_p.id), conn)]

    def proposal(self, proposal_id: int, conn: Connection | None = None,
                 lock: bool = False) -> Proposal:
        query = select(proposals).where(_p.id == proposal_id)
        found = self._rows(query.with_for_update() if lock else query, conn) \
            if 0 < proposal_id <= MAX_ID else []
        if not found:
            raise MeritError(404, f"no proposal {proposal_id}", "proposal")
        return _proposal(found[0])

    def of_call(self, call_id: int, conn: Connection | None = None) -> list[Proposal]:
        return self.proposals(_p.call == call_id, conn=conn)

    def assignments(self, *where, conn: Connection | None = None) -> list[Assignment]:
        return [Assignment(r.proposal, r.reviewer, r.conflict, r.reason)
                for r in self._rows(select(assignments).where(*where)
                                    .order_by(_a.proposal, _a.at, _a.reviewer), conn)]

    def reviews(self, *where, conn: Connection | None = None) -> list[Review]:
        return [Review(r.proposal, r.reviewer, json.loads(r.scores), r.comment, r.at)
                for r in self._rows(select(reviews).where(*where)
                                    .order_by(_r.proposal, _r.at), conn)]

    def organisations(self, conn: Connection | None = None) -> dict[str, str]:
        """Reviewers' declared organisations."""
        return {r.name: r.organisation for r in self._rows(select(reviewers), conn)}

    def _rows(self, query, conn: Connection | None):
        if conn is not None:
            return conn.execute(query).all()
        with self.engine.connect() as own:
            return own.execute(query).all()

    # -- writes, in a transaction
    @staticmethod
    def add_call(conn: Connection, call: Call) -> int:
        return int(conn.execute(insert(calls).values(
            name=call.name, programme=call.programme, gpu_type=call.gpu_type,
            gpu_hours=call.gpu_hours, max_per_proposal=call.max_per_proposal,
            opens=call.opens.isoformat(), closes=call.closes.isoformat(),
            eligibility=json.dumps(list(call.eligibility)),
            criteria=json.dumps([{"name": c.name, "weight": c.weight} for c in call.criteria]),
            reviews_needed=call.reviews_needed, created_by=call.created_by,
            created_at=call.created_at)).inserted_primary_key[0])

    @staticmethod
    def add_proposal(conn: Connection, p: Proposal) -> int:
        return int(conn.execute(insert(proposals).values(**_columns(p))
                                ).inserted_primary_key[0])

    @staticmethod
    def save_proposal(conn: Connection, p: Proposal) -> None:
        conn.execute(update(proposals).where(_p.id == p.id).values(**_columns(p)))

    @staticmethod
    def assign(conn: Connection, proposal_id: int, reviewer: str, at: str) -> None:
        conn.execute(insert(assignments).values(proposal=proposal_id, reviewer=reviewer,
                                                conflict=False, reason="", at=at))

    @staticmethod
    def conflict(conn: Connection, proposal_id: int, reviewer: str, reason: str) -> None:
        conn.execute(update(assignments).where(_a.proposal == proposal_id,
                                               _a.reviewer == reviewer)
                     .values(conflict=True, reason=reason))

    @staticmethod
    def add_review(conn: Connection, review: Review) -> None:
        conn.execute(insert(reviews).values(proposal=review.proposal,
                                            reviewer=review.reviewer,
                                            scores=json.dumps(review.scores),
                                            comment=review.comment, at=review.at))

    @staticmethod
    def set_organisation(conn: Connection, reviewer: str, organisation: str) -> None:
        changed = conn.execute(update(reviewers).where(reviewers.c.name == reviewer)
                               .values(organisation=organisation)).rowcount
        if not changed:
            conn.execute(insert(reviewers).values(name=reviewer, organisation=organisation))


#: the PostgreSQL advisory lock that makes merit review's writers take turns
WRITE_LOCK = 0x6D65726974


class _Transaction:
    """``with store.transaction() as conn``: :meth:`sqlalchemy.engine.Engine.begin`, one
    writer at a time: SQLite's write lock taken first, PostgreSQL's advisory lock (checks
    such as "what the programme's share has left" read many rows)."""

    def __init__(self, engine):
        self._begin = engine.begin()

    def __enter__(self) -> Connection:
        conn = self._begin.__enter__()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("UPDATE merit_reviewers SET name = name WHERE 0")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        return conn

    def __exit__(self, *exc):
        return self._begin.__exit__(*exc)
