"""A real workbench session to scale from, for the scaling tests (not a test module).

:class:`UserSession` starts ``user``'s server through the hub's REST API (as the spawn form
would), finds its Slurm job, and runs Python *as that user, on the session's node, with the
environment of the session's own server process* (read from ``/proc``: the variables a kernel
of that server gets, ``SLURM_JOB_ID``, ``SLURM_CONF``, ``JUPYTERHUB_SERVICE_PREFIX`` and
``JUPYTERHUB_API_TOKEN`` included). That is what a notebook's kernel is, without a browser.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from workbench.slurm import SlurmClient, SlurmError, queries
from workbench.tags import parse_job_tag

PYTHON = sys.executable

#: the scaling tests' session: ida (industry-autotwin) on a CPU node, no GPU held
IDA_SESSION = {"partition": "cpu", "account": "industry-autotwin", "gpus": 0, "cpus": 1,
               "memory": "2G", "runtime": "00:30:00"}


class UserSession:
    def __init__(self, api, slurm: SlurmClient, options: dict, timeout: float = 120):
        self.api = api
        self.user = api.user
        self.slurm = slurm
        self.options = options
        self.timeout = timeout
        self.job_id: int | None = None
        self.started = False  # a server this object requested (the only one it stops)
        self._env: dict[str, str] | None = None

    def servers(self) -> dict:
        """The user's servers from the hub (retried over another engineer's hub restart)."""
        for _ in range(20):
            r = self.api.get(f"{self.api.base}/users/{self.user}", timeout=30)
            if r.status_code == 200:
                return r.json()["servers"]
            time.sleep(2)
        raise AssertionError(f"the hub did not answer: {r.status_code} {r.text[:200]}")

    def start(self) -> UserSession:
        url = f"{self.api.base}/users/{self.user}/server"
        deadline = time.monotonic() + self.timeout
        while existing := self.servers():  # another test's server: wait for its end
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user} already has a server (another test's?): "
                                     f"{existing}")
            time.sleep(2)
        r = self.api.post(url, json={"user_options": self.options})
        assert r.status_code in (201, 202), r.text
        self.started = True
        deadline = time.monotonic() + self.timeout
        while True:
            server = self.servers().get("")
            if server and server.get("ready"):
                break
            assert time.monotonic() < deadline, f"{self.user}'s session not ready: {server}"
            time.sleep(0.5)
        self.job_id = self.session_job().job_id
        return self

    def session_job(self):
        for job in self.slurm.run(queries.jobs()):
            tag = parse_job_tag(job.comment)
            if (tag and tag["user"] == self.user and tag["server"] == "" and "session" not in tag
                    and job.state.is_running):
                return job
        raise AssertionError(f"no running session job of {self.user}")

    def stop(self) -> None:
        deadline = time.monotonic() + 90
        while self.servers():
            assert time.monotonic() < deadline, f"{self.user}'s server did not stop"
            self.api.delete(f"{self.api.base}/users/{self.user}/server", timeout=30)
            time.sleep(1)

    @property
    def environ(self) -> dict[str, str]:
        """The environment of the session's server process (what its kernels inherit)."""
        if self._env is None:
            stepd = f"slurmstepd: [{self.job_id}.batch]".encode()
            procs = {}
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    cmd = (d / "cmdline").read_bytes()
                    ppid = (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
                except (OSError, IndexError):
                    continue
                procs[d.name] = (ppid, cmd)
            steps = {pid for pid, (_, cmd) in procs.items() if cmd.startswith(stepd)}
            servers = [pid for pid, (ppid, cmd) in procs.items()
                       if ppid in steps and b"singleuser" in cmd]
            assert servers, f"no server process of job {self.job_id} on this machine"
            raw = Path(f"/proc/{servers[0]}/environ").read_bytes()
            pairs = (p.partition(b"=") for p in raw.split(b"\0") if p)
            self._env = {k.decode(): v.decode() for k, _, v in pairs}
        return self._env

    def argv(self, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.environ.items()]
        return ["sudo", "-u", self.user, "env", "-i", *env, *args]

    def popen(self, code: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(PYTHON, "-c", code), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=self.environ.get("HOME", "/tmp"), **kwargs)

    def run(self, code: str, timeout: float = 180) -> dict:
        """Run ``code`` as the user in the session's environment; it prints one JSON object
        as its last line of stdout, which is returned."""
        proc = self.popen(code)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            # from None: the argv holds the session's environment, its token included
            raise AssertionError(f"session code timed out after {timeout} s:\n{out}\n{err}"
                                 ) from None
        assert proc.returncode == 0, f"session code failed ({proc.returncode}):\n{out}\n{err}"
        return json.loads(out.strip().splitlines()[-1])

    def interact(self, code: str) -> Interaction:
        """Start ``code`` as the user in the session; it prints JSON lines (phases) and waits
        for a line on stdin (``go()``) between them."""
        return Interaction(self.popen(code, stdin=subprocess.PIPE))

    def worker_jobs(self) -> list:
        """Active jobs tagged as workers of this session (only ours: other jobs don't count)."""
        return [j for j in self.slurm.run(queries.jobs())
                if (parse_job_tag(j.comment) or {}).get("session") == str(self.job_id)
                and j.state.is_active]


class Interaction:
    """A running session process: ``read()`` its next JSON line, ``go()`` on, ``kill()`` it
    as a dying kernel would die (SIGKILL to the Python process, not to sudo)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, args=(proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line)
        q.put(None)

    def _collect(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def read(self, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                err = "".join(self.err)[-3000:]
                raise AssertionError(f"no output for {timeout} s:\n{err}") from None
            if line is None:
                raise AssertionError(f"session process ended ({self.proc.wait()}):\n"
                                     f"{''.join(self.err)[-3000:]}")
            if line.startswith("{"):
                return json.loads(line)

    def go(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def python_pid(self) -> int:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return int(children.split()[0])

    def kill(self) -> None:
        """SIGKILL the Python process, as a kernel killed by the OOM killer or a restart."""
        pid = self.python_pid()
        subprocess.run(["kill", "-KILL", str(pid)], check=True)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextmanager
def open_session(hub_url: str, password: str, slurm: SlurmClient, user: str, options: dict):
    """``user``'s session, started through the hub's REST API; on the way out (also on
    failure) its worker jobs are cancelled and the server is stopped."""
    for _ in range(10):  # another engineer's hub restart is a short outage
        try:
            r = requests.post(f"{hub_url}hub/api/users/{user}/tokens",
                              json={"auth": {"username": user, "password": password},
                                    "note": "workbench scaling tests", "expires_in": 3600},
                              timeout=30)
        except requests.ConnectionError:
            r = None
        if r is not None and r.status_code not in (502, 503):
            break
        time.sleep(3)
    assert r is not None and r.status_code == 201, r.text if r is not None else "hub down"
    api = requests.Session()
    api.headers["Authorization"] = f"token {r.json()['token']}"
    api.base = f"{hub_url}hub/api"
    api.user = user
    session = UserSession(api, slurm, options)
    try:
        yield session.start()
    finally:
        if session.started:  # never stop a server this test did not start
            if session.job_id is not None:
                for job in session.worker_jobs():
                    try:
                        slurm.run(queries.cancel(job.job_id, as_user=user))
                    except SlurmError:
                        pass  # ended meanwhile
            session.stop()


def gpu_partition(slurm: SlurmClient) -> str:
    """A GPU partition with a GPU free now (others' tests hold GPUs too): gpu, else
    gpu-a100; gpu if neither (the worker then waits in the queue)."""
    nodes = slurm.run(queries.nodes())
    for partition in ("gpu", "gpu-a100"):
        if any(partition in n.partitions and n.gpus_idle and n.idle_cpus >= 2 for n in nodes):
            return partition
    return "gpu"
