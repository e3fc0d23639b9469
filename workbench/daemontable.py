"""The daemons the workbench runs, described once: the proxy, the hub and each hub service.

A :class:`Daemon` is what a process manager needs to run one: its command line, its
environment (its tokens apart, in ``secrets``), its user, the daemons it starts after, and
where it runs. :func:`table` builds them for a site (a :class:`~workbench.hubconfig.Site`);
two readers run them:

- the local factory's runner (:class:`workbench.demo.hub.LocalHub`, ``workbench up``): each a
  daemon with a pid file and ``log/NAME.log``, every one as the caller (root);
- a site's systemd units (:mod:`workbench.units`, ``workbench site units``): the same command
  line and environment, the tokens in a root-only environment file, the table's user.

So what the demo runs is what a site's units run.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import services
from .paths import data_file

#: the search path of a daemon: the workbench's environment first (jupyterhub, the
#: single-user server's commands), then the system's (Slurm's commands, sudo, node)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY = "proxy"
HUB = "hub"


@dataclass(frozen=True)
class Daemon:
    """One daemon of the workbench.

    ``name``: its name in the table (its unit is ``aifactory-NAME.service``);
    ``argv``: its command line (no token in it); ``environment``: what it runs with besides
    the caller's; ``secrets``: gives its tokens, environment variables too, kept apart so
    that they never reach a unit's text (read from their root-only files only when it is
    started or its unit written); ``root_because``: why it must run as root ("": it runs as
    an unprivileged user of its own, :attr:`user`); ``after``: the daemons of the table it
    starts after; ``cluster``: it uses Slurm (munge, the controller) and the site's
    database; ``cwd``: where it runs (None: anywhere); ``port``: the public port it listens
    on, if any; ``pid``/``log``: the names of its pid file and log (default: ``name``).
    """

    name: str
    description: str
    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    secrets: Callable[[], dict[str, str]] = dict
    root_because: str = ""
    after: tuple[str, ...] = ()
    cluster: bool = True
    cwd: Path | None = None
    port: int | None = None
    pid: str = ""
    log: str = ""

    @property
    def user(self) -> str:
        return "root" if self.root_because else f"aifactory-{self.name}"

    @property
    def pid_name(self) -> str:
        return self.pid or self.name

    @property
    def log_name(self) -> str:
        return self.log or self.name

    def process_env(self, base: dict[str, str]) -> dict[str, str]:
        """The whole environment it runs with over ``base`` (the caller's, or none)."""
        return {**base, **self.environment, **self.secrets()}


def common_env(site, search_path: str = SYSTEM_PATH) -> dict[str, str]:
    """What every daemon runs with: the site's (home, Slurm, database), the database's
    password file where the site has one, and the workbench's environment on the path."""
    env = {**site.process_env(),
           "PATH": f"{Path(sys.executable).parent}:{search_path}"}
    pgpass = site.home.secrets / "pgpass"  # the site-demo's database password
    if site.database and pgpass.exists():
        env["PGPASSFILE"] = str(pgpass)
    return env


def table(site, public_port: int = 8000, search_path: str = SYSTEM_PATH) -> list[Daemon]:
    """The proxy, the hub and each hub service (:func:`workbench.services.registry`), in the
    order they start; ``public_port``: where the proxy listens; ``search_path``: the
    ``PATH`` after the workbench's own commands."""
    env = common_env(site, search_path)
    def proxy_token():
        return {"CONFIGPROXY_AUTH_TOKEN": site.proxy_token}

    hub = f"http://{site.hub_ip}:{site.hub_port}"
    # its path where it is installed; the bare name where not (the runners say so)
    chp = shutil.which("configurable-http-proxy") or "configurable-http-proxy"
    daemons = [
        Daemon(PROXY, "configurable-http-proxy, the hub's proxy: users' only way in",
               # every interface: no --ip (an empty word a unit's command line would need)
               (chp, "--port", str(public_port),
                "--api-ip", "127.0.0.1", "--api-port", str(site.proxy_api_port),
                "--default-target", hub, "--error-target", f"{hub}/hub/error"),
               environment=env, secrets=proxy_token, cluster=False, port=public_port),
        Daemon(HUB, "JupyterHub, the workbench's hub",
               (sys.executable, "-m", "jupyterhub", "-f", str(data_file("jupyterhub_config.py"))),
               environment=env, secrets=proxy_token,
               root_because="it submits, watches and cancels each user's jobs as that user "
                            "(sudo -u USER sbatch) and reads every user's Slurm accounts",
               after=(PROXY,), cwd=site.home.hub, pid="jupyterhub-daemon", log="jupyterhub"),
    ]
    for s in site.services():
        # in the state directory, as the hub: never the caller's directory, whose modules
        # (a checkout) would shadow the installed ones
        daemons.append(Daemon(
            s.name, s.description, s.argv, environment=services.service_env(s, site, env),
            secrets=lambda s=s: services.secret_env(s, site), root_because=s.root_because,
            after=(HUB,), cwd=site.home.root))
    return daemons
