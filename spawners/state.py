"""What ``SlurmGPUSpawner`` keeps in the hub database, and when.

batchspawner writes the job id only when ``start()`` returns, so a hub restarted while the
job is pending forgets it (an orphan, and a second job on the next spawn). Here the job id is
written the moment ``sbatch`` returns and the port the moment the job reports it
(``persist_state``); the server token is kept as a digest, so that the port callback finds
its spawner after a restart (``owns_token``); and how the last session ended (``last_end``)
survives until the user's next visit. A hub restarted, even with ``kill -9``, during a spawn
re-adopts the job (:mod:`spawners.readiness` carries the start on).
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import object_session
from traitlets.config import LoggingConfigurable


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


class SessionStateMixin(LoggingConfigurable):
    """The spawner's state in the hub database, over batchspawner's (job id, job status); the
    spawner provides ``job_id``, ``port``, ``api_token``, ``job``, ``last_end`` and
    ``orm_spawner``."""

    token_sha256 = ""  # the server token's digest: the port callback finds us after a restart

    def get_state(self):
        state = super().get_state()
        if self.job_id:
            if self.port:
                state["port"] = self.port
            digest = token_digest(self.api_token) or self.token_sha256
            if digest:
                state["token_sha256"] = digest
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def load_state(self, state):
        super().load_state(state)
        self.port = int(state.get("port", 0))
        self.token_sha256 = state.get("token_sha256", "")
        self.last_end = state.get("last_end")

    def clear_state(self):
        """Forget the job; keep ``last_end`` so the next visit can say how it ended."""
        super().clear_state()
        self.port = 0
        self.token_sha256 = ""
        self.job = None
        self._unknown_since = None

    def persist_state(self) -> None:
        """Write the state to the hub database now, not when start() returns."""
        orm_spawner = self.orm_spawner
        if orm_spawner is None:
            return
        orm_spawner.state = self.get_state()
        session = object_session(orm_spawner)
        if session is not None:
            session.commit()

    def owns_token(self, token: str) -> bool:
        """Whether ``token`` is this server's (also after a hub restart, by digest)."""
        if self.api_token:
            return token == self.api_token
        return bool(self.token_sha256) and token_digest(token) == self.token_sha256
