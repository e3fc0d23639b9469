"""The port callback: a job's single-user server tells the hub which port it listens on.

batchspawner's own handler sets *any* spawner attribute the job sends (``exec_prefix``,
``batch_query_cmd``: commands the hub later runs as root). This one replaces it at the same
URL, ``POST /hub/api/batchspawner``, so the stock ``batchspawner-singleuser`` keeps working,
and accepts ``{"port": <1-65535>}`` and nothing else.

A port reported for a server that is already up means its job's batch step was launched
again under the same job id (Slurm recovered the job after a controller or node failure): a
new server, on a new port, its kernels gone. The hub's record and the proxy's route move to
the new port at once, and the audit store says what happened (``session.relaunched``);
otherwise the route would keep the dead port until the server is stopped.
"""

from __future__ import annotations

import json

from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web

from workbench.webinput import json_body

ROUTE = r"/api/batchspawner"


class PortCallbackHandler(APIHandler):
    @web.authenticated
    async def post(self):
        user = self.current_user
        token = self.get_auth_token()
        spawner = next((s for s in getattr(user, "spawners", {}).values() if _owns(s, token)),
                       None)
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no pending server")
        body = json_body(self)
        if not isinstance(body, dict) or set(body) != {"port"}:
            raise web.HTTPError(400, 'the body must be exactly {"port": <integer>}')
        port = body["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise web.HTTPError(400, "port must be an integer from 1 to 65535")
        old = spawner.server.port if spawner.ready else None
        report = getattr(spawner, "port_reported", None)
        if report is not None:
            report(port)
        else:
            spawner.port = port
        self.log.info("%s: job reported port %s", spawner._log_name, port)
        if old is not None and old != port:
            await self._relaunched(spawner, old, port)
        self.set_status(201)
        self.finish(json.dumps({"message": "port recorded"}))


    async def _relaunched(self, spawner, old: int, port: int) -> None:
        """The running server's job started a new server: point the hub and the proxy at it."""
        self.log.warning("%s: the server of job %s was started again (port %s, was %s): Slurm "
                         "relaunched its batch step; its kernels are gone; route updated",
                         spawner._log_name, getattr(spawner, "job_id", "?"), port, old)
        spawner.server.port = port
        self.db.commit()
        await self.proxy.add_user(spawner.user, spawner.name)
        audit = getattr(spawner, "audit", None)
        if audit is not None:
            audit.record(spawner.user.name, "session.relaunched", spawner._log_name,
                         job_id=int(spawner.job_id), old_port=old, port=port)


def _owns(spawner, token: str) -> bool:
    owns = getattr(spawner, "owns_token", None)
    return owns(token) if owns is not None else spawner.api_token == token


def install() -> None:
    """Put this handler in place of batchspawner's in the hub's API routes (idempotent)."""
    routes = apihandlers.default_handlers
    routes[:] = [r for r in routes if r[0] != ROUTE]
    routes.append((ROUTE, PortCallbackHandler))
