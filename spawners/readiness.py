"""When a session's job is ready, whether it still lives, and when it has gone.

- ready: the job runs and its server listens on the port it reported; the port callback
  wakes the wait at once (``port_reported``), and a job that ends or outlasts the start
  timeout is cancelled with a message that says why and what to do;
- alive: liveness polls share one ``squeue`` per ``poll_snapshot_age``, however many
  sessions; Slurm not answering reads as "unknown" for up to ``unknown_grace`` seconds,
  never as "job gone"; a start the hub was restarted during is carried on by ``poll``;
- gone: after ``scancel``, until the job has left the running state (~10 s).
"""

from __future__ import annotations

import asyncio
import time

from batchspawner import JobStatus
from jupyterhub.spawner import SpawnException
from traitlets import Float
from traitlets.config import LoggingConfigurable

from workbench.waits import waiting_message


class ReadinessMixin(LoggingConfigurable):
    """The waits and the poll; the spawner provides ``query_job_status``, ``job``,
    ``job_id``, ``port``, ``jobs``, ``audit``, ``user``, ``node_address``,
    ``cancel_batch_job``, ``_cancel_quietly``, ``record_end``, ``describe_end``,
    ``unanswered_end``, ``last_end``, ``clear_state``, ``persist_state`` and
    ``start_timeout``."""

    poll_snapshot_age = Float(
        15.0, min=0.0,
        help="Seconds of age a liveness poll (every poll_interval) accepts from the shared "
        "squeue snapshot: however many sessions, at most one squeue per this many seconds "
        "for polling. Example: 15.",
    ).tag(config=True)

    unknown_grace = Float(
        600.0, min=0.0,
        help="Seconds a running session may stay 'unknown' (Slurm not answering) before the "
        "hub reports it stopped. A controller restart must not end sessions. Example: 600.",
    ).tag(config=True)

    not_found_grace = Float(
        10.0, min=0.0,
        help="Seconds after sbatch during which a job missing from squeue counts as not yet "
        "visible rather than ended. Example: 10.",
    ).tag(config=True)

    _port_event: asyncio.Event | None = None
    _unknown_since: float | None = None
    _submitted_at = float("-inf")  # event-loop time of the last sbatch
    _ready_once = False

    def port_reported(self, port: int) -> None:
        """Called by the port callback handler: remember the port, durably, and wake start()."""
        self.port = port
        self.persist_state()
        self.jobs.invalidate()  # the job runs now; the next look must see it
        if self._port_event is not None:
            self._port_event.set()

    async def _wait_ready(self, deadline: float) -> None:
        """Until the job runs and its server listens on the port it reported; SpawnException
        if the job ends first or ``deadline`` (event-loop time) passes, in which case the job
        is cancelled."""
        loop = asyncio.get_running_loop()
        job_id = self.job_id
        if self._port_event is None:
            self._port_event = asyncio.Event()
        delay = 0.1
        while not (self.port and self.job and self.job.state.is_running):
            status = await self.query_job_status()
            if status == JobStatus.NOTFOUND and not (
                    self.job is None and loop.time() < self._submitted_at + self.not_found_grace):
                end = await self.record_end(job_id)
                await self._cancel_quietly(job_id)
                self.clear_state()
                raise SpawnException(self.describe_end(end) + " Check your request and start "
                                     "again.", reason="job-ended", status_code=500)
            if loop.time() > deadline:
                why = waiting_message(self.job, (await self.jobs.jobs()).values()) \
                    if self.job and self.job.state.is_pending else "its server did not report"
                await self.cancel_batch_job()
                self.last_end = None
                self.clear_state()
                raise SpawnException(
                    f"Your job {job_id} did not start within {self.start_timeout} s and was "
                    f"cancelled. {why} Ask for fewer GPUs, another partition or GPU type, or "
                    "a shorter walltime, and start again.", reason="queue-timeout")
            if self._port_event.is_set():
                # the server called back, so the job runs: look again now, not in `delay`
                self._port_event.clear()
                continue
            try:
                await asyncio.wait_for(self._port_event.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 2.0)
        await self._wait_listening(deadline)

    async def _wait_listening(self, deadline: float) -> None:
        """Until the server accepts connections, checked every 20-200 ms, so the hub's own
        first check (with its randomised back-off) finds it up."""
        loop = asyncio.get_running_loop()
        host = await self.node_address(self.job.batch_host)
        delay = 0.02
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, self.port), 2)
            except (TimeoutError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
                continue
            writer.close()
            return

    async def poll(self):
        """None while the job lives; 1 (with ``last_end`` recorded) once it is gone.

        Liveness polls share one squeue per ``poll_snapshot_age``. When the hub restarted
        during this server's start, the start is carried on here (JupyterHub checks spawners
        at start-up with ``poll()``, in the background after ``init_spawners_timeout``).
        """
        status = await self.query_job_status(self.poll_snapshot_age)
        now = time.monotonic()
        if status == JobStatus.UNKNOWN:
            self._unknown_since = self._unknown_since or now
            if now - self._unknown_since < self.unknown_grace:
                return None
            self.last_end = self.unanswered_end(self.unknown_grace)
            self.clear_state()
            return 1
        self._unknown_since = None
        if status in (JobStatus.PENDING, JobStatus.RUNNING):
            if self._check_pending and not self._ready_once and not (
                    status == JobStatus.RUNNING and self.port):
                self.log.info("%s: hub restarted during the start of job %s; carrying on",
                              self._log_name, self.job_id)
                self.audit.record(self.user.name, "session.readopted", self._log_name,
                                  job_id=int(self.job_id))
                if not await self._carry_on_start():
                    return 1
            self._ready_once = True
            return None
        if self.job_id:
            await self.record_end(self.job_id)
        self.clear_state()
        return 1

    async def _carry_on_start(self) -> bool:
        """Wait for the start the hub was restarted during; False if the user stopped it.

        JupyterHub's Stop interrupts a pending start by cancelling the spawner's spawn future
        (and answers 500 if the spawner is still pending a second later); during the hub's
        start-up check the wait here is that start, so it is the spawn future for that long.
        Cancelled, it cancels the job, drops the server record and returns at once, so the
        check ends before the Stop goes on, and the Stop finds a spawner with nothing pending.
        """
        job_id = self.job_id
        loop = asyncio.get_running_loop()
        carry_on = asyncio.ensure_future(self._wait_ready(loop.time() + self.start_timeout))
        self._spawn_future = carry_on
        try:
            await carry_on
            return True
        except asyncio.CancelledError:
            if not carry_on.cancelled() or asyncio.current_task().cancelling():
                raise  # the poll itself is cancelled, not the start
            self.log.info("%s: stopped by its user while the restarted hub carried on job %s",
                          self._log_name, job_id)
            await self._cancel_quietly(job_id)
            self.jobs.invalidate()
            self.audit.record(self.user.name, "session.cancel", self._log_name,
                              job_id=int(job_id), idle_s=None)
            self.last_end = None
            self.clear_state()
            # no server: the check then ends without stopping (and forgetting) this spawner,
            # which the Stop that cancelled the start is about to stop
            self.server = None
            return False
        finally:
            self._spawn_future = None

    async def _wait_stopped(self) -> None:
        """After scancel: until the job no longer runs (~10 s in all), else a warning."""
        delay = 0.2
        for _ in range(8):
            if await self.query_job_status(0) not in (JobStatus.RUNNING, JobStatus.UNKNOWN):
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        self.log.warning("%s: job %s still running after scancel", self._log_name, self.job_id)
