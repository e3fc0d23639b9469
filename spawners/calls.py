"""The open calls for compute time on the hub's home page: ``c.JupyterHub.template_vars``'
``open_calls`` (a callable the hub calls with the user at each render), read from the merit
database that the ``access`` service writes (:mod:`workbench.merit`). The template links each
to the service, where the user applies."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from workbench.merit import CallState, MeritStore
from workbench.merit.model import iso, now
from workbench.paths import database_made

log = logging.getLogger(__name__)


def open_calls(merit_db: str) -> Callable[[object], list[dict]]:
    """``user -> [{id, name, programme, gpu_type, gpu_hours, max_per_proposal, closes}]``:
    the calls open now (none while the database was never written, or cannot be read:
    the home page still renders)."""
    def read(user) -> list[dict]:
        if not database_made(merit_db):
            return []
        try:
            calls = MeritStore(merit_db).calls()
        except SQLAlchemyError as e:
            log.warning("open calls not shown on the home page: %s", e)
            return []
        at = now()
        return [{"id": c.id, "name": c.name, "programme": c.programme,
                 "gpu_type": c.gpu_type, "gpu_hours": c.gpu_hours,
                 "max_per_proposal": c.max_per_proposal, "closes": iso(c.closes)}
                for c in calls if c.state(at) is CallState.OPEN]
    return read
