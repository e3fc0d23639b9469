"""Grants decided by merit review (calls, proposals, reviews: :mod:`workbench.merit`), kept in
the workbench's database beside the allocations file's hand-made ones.

An award is a project like one of the file's: a name, its programme, members, GPU-hours, a
validity period, and the catalogue's datasets it was granted. The loader
(:func:`workbench.allocations.loader.load`) adds the awards of the allocations in force to the
file's programmes and checks them as it checks the file (names, members, the programme's
share), so Slurm gets them by the one path, ``allocations apply``
(:mod:`.slurmsync`), and every reader (spawn form, dashboards, ``allocations show``) sees
them, marked by origin.

The table is ``awards`` in the merit database (:attr:`workbench.paths.FactoryHome.merit_db`:
the site's PostgreSQL, or ``hub/merit.sqlite`` in the demo). The values (:class:`Award`) are
in :mod:`.model`; this module (and SQLAlchemy) is imported only where a store is there to
read. A user's own processes (kernels, session servers) cannot read the hub's database:
there the allocations are the file's alone, and Slurm still enforces every grant.
"""

from __future__ import annotations

import json

from sqlalchemy import Column, Date, Float, Integer, MetaData, Table, Text, func, select
from sqlalchemy.engine import Connection

from .. import db
from .model import Award, Project

metadata = MetaData()
table = Table(
    "awards", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", Text, nullable=False, unique=True),
    Column("programme", Text, nullable=False),
    Column("members", Text, nullable=False),       # JSON list of users
    Column("gpu_hours", Float, nullable=False),
    Column("valid_from", Date),
    Column("valid_until", Date),
    Column("datasets", Text, nullable=False),      # JSON list of catalogue dataset ids
    Column("proposal", Integer, nullable=False),   # the proposal it was awarded to
    Column("awarded_by", Text, nullable=False),
    Column("awarded_at", Text, nullable=False),    # ISO, UTC
    sqlite_autoincrement=True,
)
_t = table.c


class AwardStore(db.Store):
    """The ``awards`` table: :meth:`insert` (in a caller's transaction, beside the proposal's
    decision), :meth:`awards`, :meth:`version`."""

    metadata = metadata

    @staticmethod
    def insert(conn: Connection, award: Award) -> int:
        """Add ``award`` in ``conn``'s transaction; its id."""
        g = award.grant
        result = conn.execute(table.insert().values(
            project=g.name, programme=g.programme, members=json.dumps(list(g.members)),
            gpu_hours=g.gpu_hours, valid_from=g.valid_from, valid_until=g.valid_until,
            datasets=json.dumps(list(g.datasets)), proposal=award.proposal,
            awarded_by=award.awarded_by, awarded_at=award.awarded_at))
        return int(result.inserted_primary_key[0])

    def awards(self) -> list[Award]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).order_by(_t.id)).all()
        return [Award(Project(r.project, r.programme, tuple(json.loads(r.members)),
                              r.gpu_hours, r.valid_from, r.valid_until,
                              datasets=tuple(json.loads(r.datasets))),
                      r.proposal, r.awarded_by, r.awarded_at, r.id) for r in rows]

    def version(self) -> tuple[int, int]:
        """How many awards there are and the latest id: a reader's copy is current while
        both stay the same (awards are only ever added)."""
        with self.engine.connect() as conn:
            count, last = conn.execute(select(func.count(), func.coalesce(func.max(_t.id), 0))
                                       ).one()
        return int(count), int(last)

