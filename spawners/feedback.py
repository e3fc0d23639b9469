"""What a user is told about their session's job: while it starts, Slurm's reason in plain
words, the queue position, the estimated start and how to start sooner (``progress``); once it
has ended, how and why, shown on their next visit to the spawn page (``last_end``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from traitlets.config import LoggingConfigurable

from workbench.slurm import SlurmError, queries
from workbench.slurm.models import Job
from workbench.slurm.snapshot import shared_nodes
from workbench.waits import END_WORDS, queue_positions, waiting_message

_ranked: tuple[dict, dict] = ({}, {})  # a job snapshot's value and its queue positions


def ranked_queue(jobs: dict[int, Job]) -> dict[int, tuple[int, int]]:
    """Queue positions of every pending job of the shared snapshot's ``jobs``, ranked once
    per snapshot for every waiting user's spawn page: each page asks every second, and
    ranking per page made N waiting users cost O(N²) a second (1,000 waiting: the whole loop)."""
    global _ranked
    if _ranked[0] is not jobs:
        _ranked = (jobs, queue_positions(jobs.values()))
    return _ranked[1]


class SessionFeedbackMixin(LoggingConfigurable):
    """Progress and end reports; the spawner provides ``job``, ``job_id``, ``port``,
    ``slurm``, ``jobs``, ``audit``, ``user``, ``job_output``, ``req_homedir`` and keeps
    ``last_end`` in its state."""

    last_end: dict | None = None  # how the last session ended, shown on the next visit

    async def end_of(self, job_id: str) -> dict:
        """How a job ended, from the last snapshot or from accounting."""
        state, exit_code, reason = "", "", ""
        if self.job is not None and self.job.job_id == int(job_id):
            state, reason = self.job.state.value, self.job.reason
            if self.job.exit_code is not None:
                exit_code = str(self.job.exit_code)
        try:
            end = await self.slurm.arun(queries.job_end(int(job_id)))
        except SlurmError:
            end = None
        if end:
            state, exit_code = end[0].value, end[1]
        return {"job_id": int(job_id), "state": state or "GONE", "exit_code": exit_code,
                "reason": reason, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "log": self.job_output.format(homedir=self.req_homedir).replace("%j", job_id)}

    def describe_end(self, end: dict) -> str:
        words = END_WORDS.get(end["state"], "it is gone from the queue")
        code = f", exit code {end['exit_code']}" if end.get("exit_code") not in ("", None,
                                                                               "0:0") else ""
        return (f"Your notebook job {end['job_id']} ended ({end['state']}{code}): {words}. "
                f"Its output is in {end['log']}.")

    async def record_end(self, job_id: str) -> dict:
        self.last_end = await self.end_of(job_id)
        self.log.warning("%s: job %s ended: %s", self._log_name, job_id, self.last_end)
        self.audit.record(self.user.name, "session.ended", self._log_name, **self.last_end)
        return self.last_end

    def unanswered_end(self, grace: float) -> dict:
        """The end recorded when Slurm has not answered about the job for ``grace`` s."""
        return {"job_id": int(self.job_id or 0), "state": "UNKNOWN", "exit_code": "",
                "reason": f"Slurm did not answer for {grace:.0f} s", "log": "",
                "at": datetime.now(UTC).isoformat(timespec="seconds")}

    async def _progress_message(self) -> dict:
        job = self.job
        if job is None:
            return {"progress": 10, "message": "Submitting your job to Slurm..."}
        if job.state.is_pending:
            try:
                jobs = await self.jobs.jobs()
                nodes = await shared_nodes(self.slurm).get()
            except SlurmError:
                return {"progress": 20, "message": f"Job {job.job_id} is waiting; Slurm is "
                        "not answering right now."}
            return {"progress": 30, "message": waiting_message(
                job, jobs.values(), nodes, positions=ranked_queue(jobs))}
        if job.state.is_running and not self.port:
            return {"progress": 70, "message":
                    f"Job {job.job_id} running on {job.batch_host}; starting JupyterLab..."}
        return {"progress": 90, "message": "JupyterLab is up; connecting..."}

    async def progress(self):
        """Real state from the shared snapshots, refreshed every second while starting."""
        last = None
        while not (self.job is not None and self.job.state.is_running and self.port):
            msg = await self._progress_message()
            if msg != last:
                yield msg
                last = msg
            await asyncio.sleep(1)
        yield await self._progress_message()
