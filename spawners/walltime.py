"""``/hub/api/workbench/walltime/{user}[/{server}]``: time left, and asking for more.

GET (scope ``read:servers``): the running session's job, time limit, end and seconds left,
and its figures so far (``usage``: :func:`workbench.efficiency.so_far`, CPU and peak memory
from one shared ``sstat`` every 30 s for all sessions, GPUs from the job's own samples; null
figures are "not measured"; ``usage_error`` says why ``usage`` is null when Slurm did not
answer).
POST ``{"minutes": N}`` (scope ``servers``, so the user or an admin): extend the job's time
limit by N minutes with ``scontrol update`` run by the hub (operator side), within the
partition's MaxTime and the project's GPU-hours; refused with HTTP 400 and what is possible.
"""

from __future__ import annotations

import asyncio
import json

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from workbench import efficiency
from workbench.resources import InvalidRequest
from workbench.sessions import gpu_samples_path
from workbench.slurm import SlurmError, queries
from workbench.slurm.snapshot import shared_partitions, shared_usage
from workbench.walltime import plan_extension, walltime
from workbench.webinput import json_body

ROUTE = r"/api/workbench/walltime/(?P<user_name>[^/]+)/?(?P<server_name>[^/]*)"
_EXTENDING: dict[str, asyncio.Lock] = {}  # per session (spawner._log_name)


class WalltimeHandler(APIHandler):
    def _spawner(self, user_name: str, server_name: str):
        user = self.find_user(user_name)
        if user is None or server_name not in user.spawners:
            raise web.HTTPError(404, f"no server {user_name}/{server_name}")
        spawner = user.spawners[server_name]
        if not spawner.active or not getattr(spawner, "job_id", ""):
            raise web.HTTPError(404, f"{user_name}/{server_name} is not running")
        return spawner

    async def _state(self, spawner, max_age: float | None = None):
        """The session's job and walltime. JupyterLab and the home page ask every 30 s per
        session: reads come from the hub's shared snapshots (``max_age``), so Slurm sees no
        more calls however many sessions there are; an extension reads fresh."""
        jobs = await spawner.jobs.jobs(max_age)
        job = jobs.get(int(spawner.job_id))
        if job is None:
            raise web.HTTPError(404, f"job {spawner.job_id} is not in the queue")
        parts = await shared_partitions(spawner.slurm).get(max_age)
        return job, walltime(job, parts.get(job.partition))

    @needs_scope("read:servers")
    async def get(self, user_name, server_name=""):
        spawner = self._spawner(user_name, server_name)
        job, wall = await self._state(spawner, spawner.poll_snapshot_age)
        if wall is None:
            self.finish(json.dumps({"job_id": job.job_id, "running": False,
                                    "state": job.state.value}))
            return
        usage, error = await self._usage(spawner, job)
        self.finish(json.dumps({**wall.as_dict(), "running": True,
                                "warn_s": spawner.walltime_warning_s,
                                "usage": usage, "usage_error": error}))

    async def _usage(self, spawner, job) -> tuple[dict | None, str | None]:
        """The session's figures so far, or None and why not."""
        try:
            live = await shared_usage(spawner.slurm).get(job.job_id)
        except SlurmError as e:
            return None, f"Slurm did not say what the session used so far ({e.stderr or e})"
        try:
            path = gpu_samples_path(spawner.user.name, job.job_id)
        except KeyError:  # no Unix account (any more): nothing to read
            path = None
        samples = await asyncio.to_thread(efficiency.read_samples, path) if path else []
        return efficiency.so_far(job, live, samples).as_json(), None

    @needs_scope("servers")
    async def post(self, user_name, server_name=""):
        spawner = self._spawner(user_name, server_name)
        body = json_body(self) or {}
        if not isinstance(body, dict) or set(body) != {"minutes"}:
            raise web.HTTPError(400, 'the body must be {"minutes": <whole number>}')
        # one extension of a session at a time: a second one (another tab, a double click)
        # plans from the limit the first one set, not from the same old one
        async with _EXTENDING.setdefault(spawner._log_name, asyncio.Lock()):
            await self._extend(spawner, body["minutes"])

    async def _extend(self, spawner, minutes) -> None:
        job, wall = await self._state(spawner, 0)
        if wall is None:
            raise web.HTTPError(400, f"job {job.job_id} is not running ({job.state.value})")
        budget = next((b for b in await spawner.budgets() if b.project == job.account), None)
        try:
            new_limit = plan_extension(job, wall, minutes, budget)
        except InvalidRequest as e:
            spawner.audit.record(self.current_user.name, "walltime.refused", spawner._log_name,
                                 job_id=job.job_id, minutes=minutes, message=e.message)
            raise web.HTTPError(400, f"Cannot extend: {e.message}".replace("%", "%%")) from None
        try:
            await spawner.slurm.arun(queries.set_time_limit(job.job_id, new_limit))
        except SlurmError as e:
            raise web.HTTPError(503, f"Slurm refused the extension: {e.stderr}") from e
        spawner.jobs.invalidate()  # every reader sees the new limit from now on
        spawner.audit.record(self.current_user.name, "walltime.extended", spawner._log_name,
                             job_id=job.job_id, minutes=minutes, new_limit_min=new_limit)
        self.log.info("%s: job %s time limit now %s min", spawner._log_name, job.job_id,
                      new_limit)
        job, wall = await self._state(spawner)
        self.finish(json.dumps({**wall.as_dict(), "running": True,
                                "warn_s": spawner.walltime_warning_s}))
