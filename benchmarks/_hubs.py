"""Throwaway JupyterHubs for the benchmarks, one per spawner class.

Each hub runs from its own temporary directory (sqlite db, cookie secret, pid files, log) on
its own ports, starts its own configurable-http-proxy, and is driven through the REST API with
a service token that has admin scopes. Its configuration is a JSON file read by a fixed
``jupyterhub_config.py`` (:data:`CONFIG_PY`), so no Python is generated.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests
from _cluster import BenchmarkError, JobShape, port_is_free, slurm_conf, wait_until

#: the hub's configuration file: settings come from hub-settings.json next to it
CONFIG_PY = '''\
import json
from pathlib import Path

c = get_config()  # noqa: F821
settings = json.loads((Path(__file__).parent / "hub-settings.json").read_text())
if settings.pop("_workbench_hub_sqlite", False):
    # as workbench.hubconfig does for the hub's own SQLite file: WAL, no fsync per commit
    from workbench.hubconfig import hub_sqlite_kwargs

    c.JupyterHub.db_kwargs = hub_sqlite_kwargs()
if settings.pop("_workbench_port_callback", False):
    # as workbench.hubconfig does: the workbench's strict port callback
    from spawners import api

    api.install()
if settings.pop("_batchspawner_port_callback", False):
    # batchspawner's own port callback, whatever else is installed in this environment
    from batchspawner.api import BatchSpawnerAPIHandler
    from jupyterhub import apihandlers

    routes = apihandlers.default_handlers
    routes[:] = [r for r in routes if r[0] != "/api/batchspawner"]
    routes.append(("/api/batchspawner", BatchSpawnerAPIHandler))
for section, values in settings.items():
    for name, value in values.items():
        setattr(c[section], name, value)
'''

#: scopes of the benchmark's service token (tokens: the storm's users get their own)
SERVICE_SCOPES = ["admin:users", "admin:servers", "list:users", "read:users", "tokens"]
#: environment variables the single-user job keeps, the same for both spawners
ENV_KEEP = ["PATH", "LANG", "LC_ALL", "SLURM_CONF"]
HTTP_TIMEOUT = 30


@dataclass(frozen=True)
class HubPorts:
    public: int
    proxy_api: int
    hub: int

    @classmethod
    def from_base(cls, base: int) -> HubPorts:
        """``base`` public, ``base+1`` proxy API, ``base+81`` hub API (8100, 8101, 8181)."""
        return cls(base, base + 1, base + 81)

    def require_free(self) -> None:
        busy = [p for p in (self.public, self.proxy_api, self.hub) if not port_is_free(p)]
        if busy:
            raise BenchmarkError(f"port(s) {busy} already in use; pick others with --port-base")


def env_bin_default() -> str:
    return str(Path(sys.executable).parent)


def common_settings(workdir: Path, ports: HubPorts, users: list[str], token: str,
                    start_timeout: int, checkout: str = "") -> dict:
    """What both hubs share: ports, state files (the SQLite file as the workbench's hub
    keeps it: WAL, no fsync per commit), the service token, the allowed users; ``checkout``:
    a source tree first on the jobs' PYTHONPATH (``--checkout``)."""
    settings = {
        "_workbench_hub_sqlite": True,
        "JupyterHub": {
            "bind_url": f"http://127.0.0.1:{ports.public}",
            "hub_ip": "127.0.0.1",
            "hub_port": ports.hub,
            "db_url": f"sqlite:///{workdir / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(workdir / "jupyterhub_cookie_secret"),
            "pid_file": str(workdir / "jupyterhub.pid"),
            "authenticator_class": "null",
            "services": [{"name": "benchmark", "api_token": token}],
            "load_roles": [{"name": "benchmark", "scopes": SERVICE_SCOPES,
                            "services": ["benchmark"]}],
            # POST .../server answers at once (202) instead of after 10 s
            "tornado_settings": {"slow_spawn_timeout": 0},
            "concurrent_spawn_limit": 0,
            "cleanup_servers": True,
        },
        "ConfigurableHTTPProxy": {
            "api_url": f"http://127.0.0.1:{ports.proxy_api}",
            "auth_token": secrets.token_hex(32),
            "pid_file": str(workdir / "proxy.pid"),
        },
        "Authenticator": {"allowed_users": sorted(users)},
        "Spawner": {"env_keep": ENV_KEEP, "start_timeout": start_timeout,
                    "http_timeout": 120, "default_url": "/lab"},
    }
    if checkout:
        settings["Spawner"]["environment"] = {"PYTHONPATH": checkout}
    return settings


def ours_settings(workdir: Path, env_bin: str, slurm_bindir: str = "",
                  shape: JobShape | None = None) -> dict:
    """SlurmGPUSpawner ("slurm-gpu"), no budget check, audit log in ``workdir``."""
    return {
        "_workbench_port_callback": True,
        "JupyterHub": {"spawner_class": "slurm-gpu"},
        "SlurmGPUSpawner": {
            "slurm_conf": slurm_conf(), "env_bin": env_bin, "allocations_file": "",
            "audit_db": str(workdir / "audit.sqlite"), "hub_id": "benchmark",
            "default_partition": (shape or JobShape()).partition,
            "slurm_bindir": slurm_bindir,
        },
    }


def stock_settings(env_bin: str, node_address: str, slurm_bindir: str = "",
                   shape: JobShape | None = None) -> dict:
    """batchspawner.SlurmSpawner with the same job shape and single-user environment.

    ``node_address``: the stock spawner connects to the node *name* squeue prints, which does
    not resolve on this machine; ``state_exechost_exp`` maps it to the node's address.
    ``slurm_bindir``: run sbatch/squeue/scancel from there (sudo's secure_path would
    otherwise pick /usr/bin). ``shape``: the job (default :class:`JobShape`'s).
    """
    traits = {
        "exec_prefix": "sudo -E -u {username}",
        "batchspawner_singleuser_cmd": f"{env_bin}/batchspawner-singleuser",
        "cmd": [f"{env_bin}/jupyterhub-singleuser"],
        "state_exechost_exp": node_address,
        **(shape or JobShape()).stock_traits(),
    }
    if slurm_bindir:
        traits.update(
            batch_submit_cmd=f"{slurm_bindir}/sbatch --parsable",
            batch_query_cmd=f"{slurm_bindir}/squeue -h -j {{job_id}} -o '%T %B'",
            batch_cancel_cmd=f"{slurm_bindir}/scancel {{job_id}}",
        )
    return {"JupyterHub": {"spawner_class": "batchspawner.SlurmSpawner"},
            "SlurmSpawner": traits, "_batchspawner_port_callback": True}


def merge(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for section, values in part.items():
            if isinstance(values, dict):
                out.setdefault(section, {}).update(values)
            else:
                out[section] = values
    return out


class HubApi:
    """The hub's REST API as the benchmark service."""

    def __init__(self, base_url: str, token: str):
        self.base = base_url.rstrip("/") + "/hub/api"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, timeout=HTTP_TIMEOUT)

    def server(self, user: str) -> dict | None:
        r = self.get(f"/users/{user}")
        r.raise_for_status()
        return r.json()["servers"].get("")

    def spawn(self, user: str, options: dict) -> None:
        r = self.session.post(f"{self.base}/users/{user}/server",
                              json={"user_options": options}, timeout=HTTP_TIMEOUT)
        if r.status_code not in (201, 202):
            raise BenchmarkError(f"spawn for {user} refused: {r.status_code} {r.text}")

    def user_token(self, user: str) -> str:
        """A new token of ``user``'s own (generated by the hub: as cheap to check as a
        browser's login, unlike the service token from the configuration, which the hub
        hashes with 16,384 rounds of SHA-512 on every request)."""
        r = self.session.post(f"{self.base}/users/{user}/tokens",
                              json={"note": "benchmark", "expires_in": 7200},
                              timeout=HTTP_TIMEOUT)
        if r.status_code != 201:
            raise BenchmarkError(f"no token for {user}: {r.status_code} {r.text}")
        return r.json()["token"]

    def stop(self, user: str) -> None:
        r = self.session.delete(f"{self.base}/users/{user}/server", timeout=HTTP_TIMEOUT)
        if r.status_code not in (202, 204, 400, 404):
            raise BenchmarkError(f"stop of {user}'s server: {r.status_code} {r.text}")

    def active_servers(self) -> dict[str, dict]:
        """Default servers that are pending or running, by user name (up to 200 users)."""
        r = self.session.get(f"{self.base}/users", params={"state": "active", "limit": "200"},
                             timeout=HTTP_TIMEOUT)
        r.raise_for_status()
        return {u["name"]: u["servers"][""] for u in r.json() if "" in (u["servers"] or {})}

    def stop_and_wait(self, user: str, timeout: float = 60) -> None:
        self.stop(user)
        wait_until(lambda: self.server(user) is None, f"{user}'s server stopped", timeout)

    def wait_ready(self, user: str, since: float, timeout: float, interval: float = 0.05
                   ) -> float:
        """Poll until ``user``'s server is ready; seconds from ``since`` (perf_counter)."""
        deadline = since + timeout
        while True:
            server = self.server(user)
            now = time.perf_counter()
            if server and server.get("ready"):
                return now - since
            if server is None:
                raise BenchmarkError(f"{user}'s spawn failed (server gone); see the hub log")
            if now > deadline:
                raise BenchmarkError(f"{user}'s server not ready within {timeout:g} s")
            time.sleep(interval)


class ThrowawayHub:
    """One JupyterHub (and the proxy it starts) from ``workdir``; :meth:`stop` ends both."""

    def __init__(self, name: str, workdir: Path, ports: HubPorts, settings: dict, token: str,
                 env_bin: str, checkout: str = ""):
        self.name = name
        self.workdir = workdir
        self.ports = ports
        self.settings = settings
        self.env_bin = env_bin
        self.checkout = checkout
        self.url = f"http://127.0.0.1:{ports.public}"
        self.token = token
        self.api = HubApi(self.url, token)
        self.logfile = workdir / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None
        self.proxy_pid: int | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = slurm_conf()
        env["PATH"] = f"{self.env_bin}:{env.get('PATH', '/usr/bin:/bin')}"
        if self.checkout:
            env["PYTHONPATH"] = self.checkout
        return env

    def start(self, timeout: float = 90) -> None:
        self.ports.require_free()
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(CONFIG_PY)
        settings = self.workdir / "hub-settings.json"
        settings.touch(mode=0o600)
        settings.write_text(json.dumps(self.settings, indent=2))
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [f"{self.env_bin}/python", "-m", "jupyterhub", "-f", str(config)],
                cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, f"{self.name} hub at {self.url}", timeout)
        self.proxy_pid = self._read_proxy_pid()

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchmarkError(f"{self.name} hub exited ({self.proc.returncode}):\n"
                                 f"{self.log_tail()}")
        try:
            return self.api.get("/").status_code == 200
        except requests.RequestException:
            return False

    def _read_proxy_pid(self) -> int | None:
        try:
            return int((self.workdir / "proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 90) -> None:
        """SIGTERM the hub (it stops its servers and its proxy), SIGKILL if it hangs, then
        end the proxy if it outlived the hub."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pid = self.proxy_pid
        if pid and _is_proxy(pid):
            os.kill(pid, signal.SIGTERM)

    def log_offset(self) -> int:
        return self.logfile.stat().st_size if self.logfile.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.logfile, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_since(max(self.log_offset() - 20000, 0))
        return "\n".join(text.splitlines()[-lines:])


#: the two hubs of a benchmark, and how far above --port-base each one's ports are
PORT_OFFSETS = {"ours": 0, "stock": 100}


def start_hubs(stack, workdir: Path, args, users: list[str], node_address: str,
               start_timeout: int, slurm_bindir: str = "", shape: JobShape | None = None,
               kinds=tuple(PORT_OFFSETS)) -> dict[str, ThrowawayHub]:
    """Start one throwaway hub per kind (ours: SlurmGPUSpawner, stock: SlurmSpawner) in
    ``workdir``/KIND, allowing ``users``, each stopped when ``stack`` exits. ``args``: the
    common options (:func:`add_common_options`)."""
    hubs = {}
    for kind in kinds:
        ports = HubPorts.from_base(args.port_base + PORT_OFFSETS[kind])
        hubdir = workdir / kind
        token = secrets.token_hex(32)
        specific = (ours_settings(hubdir, args.env_bin, slurm_bindir, shape) if kind == "ours"
                    else stock_settings(args.env_bin, node_address, slurm_bindir, shape))
        settings = merge(common_settings(hubdir, ports, users, token, start_timeout,
                                         args.checkout), specific)
        hub = hubs[kind] = ThrowawayHub(kind, hubdir, ports, settings, token, args.env_bin,
                                        args.checkout)
        stack.callback(hub.stop)
        hub.start()
        print(f"{hub.name} hub up at {hub.url} (log {hub.logfile})", flush=True)
    return hubs


def _is_proxy(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"configurable-http-proxy" in cmdline


def log_events(text: str, markers: dict[str, str]) -> dict[str, float]:
    """Epoch time of the first hub log line containing each marker (JupyterHub's format:
    ``[I 2026-01-01 12:00:00.123 JupyterHub ...] message``)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        for name, marker in markers.items():
            if name in found or marker not in line:
                continue
            try:
                stamp = datetime.strptime(line[3:26], "%Y-%m-%d %H:%M:%S.%f")
            except ValueError:
                continue
            found[name] = stamp.timestamp()
    return found


def drop_workdir(workdir: Path, keep) -> None:
    """Remove the hubs' temporary directory, or say where it is when ``keep`` (e.g. failed)."""
    if keep:
        print(f"hub logs and state kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def checkout_dir(value: str) -> str:
    """``--checkout``: an absolute path holding the workbench's packages."""
    path = Path(value).resolve()
    if not all((path / name / "__init__.py").is_file() for name in ("spawners", "extensions")):
        raise argparse.ArgumentTypeError(f"{value}: no spawners/ and extensions/ packages there")
    return str(path)


def add_common_options(p, keep_logs_what: str) -> None:
    """Options both benchmarks take: ports, environment, JSON output, logs."""
    p.add_argument("--port-base", type=int, default=8100,
                   help="ours on BASE/BASE+1/BASE+81 (public/proxy API/hub), stock on "
                        "BASE+100/... (default 8100: 8100/8101/8181 and 8200/8201/8281)")
    p.add_argument("--env-bin", default=env_bin_default(),
                   help="bin directory of the single-user environment (default: this "
                        "interpreter's, e.g. /opt/aifactory/venv/bin)")
    # default None, not "": argparse passes a string default through `type` (the current
    # directory would become the checkout)
    p.add_argument("--checkout", type=checkout_dir, default=None, metavar="DIR",
                   help="a source tree of the workbench (e.g. a git worktree) to put first on "
                        "PYTHONPATH of both hubs, their jobs and the benchmark's own servers, "
                        "so that they run its spawners/ and extensions/ instead of the ones "
                        "installed in --env-bin's environment; it must be readable by the "
                        "benchmark users (default: the installed code)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write the figures as JSON to FILE instead of printing them last")
    p.add_argument("--keep-logs", action="store_true",
                   help=f"keep the hubs' temporary directory ({keep_logs_what}) and print its "
                        "path")
