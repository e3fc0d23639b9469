"""``GET /hub/api/workbench/sessions/{user}``: the user's last 50 sessions.

Each with job id, project, partition, node, GPUs, start, end, how it ended in plain words,
GPU-hours charged, its output file and last lines, and its efficiency (CPU and memory from
accounting, GPUs from the job's own samples; None where not measured):
:func:`workbench.sessions.past_sessions`. Scope ``read:servers`` and being the user, in
support or an admin; anyone else 403 (managers read servers, not people's sessions). When
accounting does not answer, the last list this hub read is returned with the error
(``"stale": true``).
"""

from __future__ import annotations

import asyncio
import json
import time

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web

from workbench.audit import AuditLog
from workbench.sessions import past_sessions
from workbench.slurm import SlurmClient, SlurmError

ROUTE = r"/api/workbench/sessions/(?P<user_name>[^/]+)"
_LAST: dict[str, tuple[float, list[dict]]] = {}  # user -> (when read, sessions)
#: seconds one reading serves (a home page reloaded is not one more sacct each time)
MAX_AGE_S = 30


class SessionsHandler(APIHandler):
    async def get(self, user_name):
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        # the hub's own scope check (needs_scope would answer 404 for another user); of those
        # who may read others' servers, only support and admins read their sessions
        me = self.current_user
        staff = getattr(me, "admin", False) or "support" in {
            g.name for g in getattr(me, "groups", ())}
        if not has_scope(f"read:servers!user={user_name}", self.parsed_scopes, db=self.db) \
                or (getattr(me, "name", None) != user_name and not staff):
            raise web.HTTPError(403, f"only {user_name}, support and the hub's admins may "
                                     f"see {user_name}'s sessions")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name}")
        spawner = user.spawners.get("") or next(iter(user.spawners.values()), None)
        slurm = getattr(spawner, "slurm", None) or SlurmClient()
        audit = getattr(spawner, "audit", None) or AuditLog(self.settings["workbench_audit"])
        cull = self.settings.get("workbench_cull_timeout")
        at, last = _LAST.get(user_name, (0.0, []))
        if time.time() - at < MAX_AGE_S:
            self.finish(json.dumps({"sessions": last, "stale": False, "as_of": at}))
            return
        try:
            found = await asyncio.to_thread(past_sessions, user_name, audit, slurm,
                                            cull_timeout_s=cull)
        except SlurmError as e:
            self.finish(json.dumps({
                "sessions": last, "stale": True, "as_of": at or None,
                "error": f"Slurm accounting did not answer ({e.stderr or e}): "
                         + ("the list as last read" if at else "no list read yet")}))
            return
        sessions = [s.as_json() for s in found]
        _LAST[user_name] = (time.time(), sessions)
        self.finish(json.dumps({"sessions": sessions, "stale": False, "as_of": time.time()}))
