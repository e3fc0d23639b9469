"""Voila behind the hub: each dashboard is a hub service running ``jupyterhub-singleuser``
with Voila as a server extension, locked down to showing one notebook.

``python -m extensions.dashboards.service NAME`` (``workbench up`` runs it with the service
environment of :func:`workbench.services.process_env`) prepares the service's own directory
under ``AIFACTORY_HOME/dashboards/NAME`` and replaces itself with ``jupyterhub-singleuser``:

- **Who gets in** is the hub's decision: OAuth with the service's client, and the
  ``access:services!service=NAME`` scope the hub grants by role (``support`` or ``managers``
  group, and admins). Anyone else gets 403 from the service before any kernel starts.
- **Only the dashboard**: the server's root holds a copy of this service's notebook and
  nothing else (the support service cannot render the managers' notebook); every other server
  extension is off (JupyterLab, terminals, the proxy, collaboration, LSP, the walltime
  extension); :class:`DashboardAuthorizer` refuses the contents, files, sessions, terminals
  and kernel-management APIs; a browser's kernel websocket may carry widget messages
  (``comm_*``, ``kernel_info_request``) and nothing else, so no viewer can execute code.
- **The service's token** has only what the page needs (see :mod:`workbench.services`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyterhub.singleuser.extension import JupyterHubAuthorizer
from traitlets import Float

from workbench.paths import FactoryHome, data_file

#: service name → its notebook (in the repository's ``notebooks/``)
NOTEBOOKS = {"support-dashboard": "support.ipynb", "manager-dashboard": "programmes.ipynb"}

#: kernel messages a browser may send: widget traffic only (no execute_request)
ALLOWED_MESSAGE_TYPES = ["comm_open", "comm_close", "comm_msg", "comm_info_request",
                         "kernel_info_request"]

#: the only server extensions loaded (jupyterhub-singleuser loads itself)
EXTENSIONS_ON = ("voila.server_extension",)

#: the JupyterLab frontend extensions a dashboard page loads: the widgets and plotly
FRONTEND_EXTENSIONS = ("@voila-dashboards/widgets-manager8", "@jupyter-widgets/jupyterlab-manager",
                       "jupyterlab-plotly")

#: server extensions a dashboard service turns off even if the environment does not enable
#: them (every other extension the environment enables is turned off too)
EXTENSIONS_OFF = ("jupyterlab", "notebook", "notebook_shim", "jupyter_server_terminals",
                  "jupyter_server_proxy", "jupyter_lsp", "jupyter_server_ydoc",
                  "jupyter_server_fileid", "jupyter_collaboration", "dask_labextension",
                  "voila")


class DashboardKernelManager(AsyncMappingKernelManager):
    """Each viewer's kernel ends when its page is gone.

    Voila starts a kernel per page view. A dashboard that refreshes itself keeps its kernel
    active, so the usual idle culling never ends the kernel of a closed tab; here a kernel
    with no open connection is shut down once it is ``cull_unwatched_after`` seconds old (the
    page connects within seconds of being rendered). The culler runs every ``cull_interval``.
    """

    cull_unwatched_after = Float(
        120.0, min=10.0,
        help="""Seconds after its start when a kernel that no page is connected to is shut
        down (a closed tab, a viewer gone). Example: 120.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._born: dict[str, float] = {}

    async def start_kernel(self, *args, **kwargs):
        kernel_id = await super().start_kernel(*args, **kwargs)
        self._born.setdefault(kernel_id, time.monotonic())
        return kernel_id

    async def cull_kernel_if_idle(self, kernel_id):
        age = time.monotonic() - self._born.get(kernel_id, time.monotonic())
        if not self._kernel_connections.get(kernel_id, 0) and age > self.cull_unwatched_after:
            self.log.info("Shutting down kernel %s: no page has watched it (%.0f s old)",
                          kernel_id, age)
            self._born.pop(kernel_id, None)
            await self.shutdown_kernel(kernel_id)
            return
        await super().cull_kernel_if_idle(kernel_id)


def enabled_extensions() -> list[str]:
    """The server extensions this environment enables (``jupyter server extension list``)."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager
    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    return [name for name, on in manager.get_jpserver_extensions().items() if on]


class DashboardAuthorizer(JupyterHubAuthorizer):
    """The hub's scope check, plus: a viewer may only talk to a kernel's widgets.

    Jupyter Server asks an authorizer for every API call (resource and action); the
    dashboard page itself (Voila's handler) needs none of them, its widgets need the kernel
    websocket (``execute`` on ``kernels``, filtered to widget messages). Everything else
    (contents, files, sessions, terminals, starting or listing kernels, nbconvert, events,
    server shutdown) is refused.
    """

    ALLOWED = frozenset({("kernels", "execute"), ("kernelspecs", "read"), ("api", "read")})

    #: the page's widget manager reads its own kernel's model (not the list of kernels)
    ONE_KERNEL = re.compile(r"/api/kernels/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                            r"[0-9a-f]{12}$")

    def is_authorized(self, handler, user, action, resource):
        one_kernel = (resource == "kernels" and action == "read" and
                      handler.request.method == "GET" and
                      bool(self.ONE_KERNEL.search(handler.request.path)))
        if (resource, action) not in self.ALLOWED and not one_kernel:
            self.log.warning("dashboard: refused %s %s to %s (%s %s)", action, resource,
                             user.username, handler.request.method, handler.request.path)
            return False
        return super().is_authorized(handler, user, action, resource)


def server_config(root_dir: Path, environment_extensions: list[str] = ()) -> dict:
    """The Jupyter Server config of a dashboard service (JSON-able): only Voila on, of the
    ``environment_extensions`` and :data:`EXTENSIONS_OFF`."""
    extensions = {name: False for name in (*EXTENSIONS_OFF, *environment_extensions)}
    extensions.update({name: True for name in EXTENSIONS_ON})
    return {
        "ServerApp": {
            "root_dir": str(root_dir),
            "jpserver_extensions": extensions,
            "terminals_enabled": False,
            "authorizer_class": "extensions.dashboards.service.DashboardAuthorizer",
            "allow_remote_access": True,
            "allow_root": True,  # reads job output as root; viewers cannot run code
            "kernel_manager_class": "extensions.dashboards.service.DashboardKernelManager",
        },
        "ContentsManager": {"allow_hidden": False},
        "FileContentsManager": {"delete_to_trash": False},
        "MappingKernelManager": {
            "allowed_message_types": ALLOWED_MESSAGE_TYPES,
            # a viewer who closes the tab without Voila's shutdown call: the kernel ends
            # within 2-3 min (DashboardKernelManager), or after 10 min idle
            "cull_idle_timeout": 600,
            "cull_interval": 60,
            "cull_connected": False,
        },
        "DashboardKernelManager": {"cull_unwatched_after": 120},
        "VoilaConfiguration": {
            "show_tracebacks": False,
            # only the frontend extensions a dashboard draws with (not the collaboration,
            # dask, proxy and workbench ones the environment also holds)
            "extension_allowlist": list(FRONTEND_EXTENSIONS),
        },
    }


def prepare(name: str, home: FactoryHome | None = None) -> tuple[Path, dict[str, str]]:
    """The service's directory (root-only) with its notebook and config; returns it and the
    environment additions for ``jupyterhub-singleuser``."""
    if name not in NOTEBOOKS:
        raise SystemExit(f"no dashboard service {name!r} (known: {', '.join(NOTEBOOKS)})")
    home = home or FactoryHome.from_env()
    base = home.root / "dashboards" / name
    root, config = base / "root", base / "config"
    for d in (base, root, config):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    notebook = NOTEBOOKS[name]
    for old in root.iterdir():
        if old.name != notebook and old.is_file():
            old.unlink()
    shutil.copyfile(data_file("notebooks", notebook), root / notebook)
    (config / "jupyter_server_config.json").write_text(
        json.dumps(server_config(root, enabled_extensions()), indent=2) + "\n")
    env = {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERHUB_DEFAULT_URL": f"/voila/render/{notebook}",
        # the singleuser extension names the server's owner from this; a service has none
        "JUPYTERHUB_USER": name,
        "JUPYTERHUB_ACTIVITY_URL": "",
        # kernels import the project from its source tree
        "PYTHONPATH": os.pathsep.join(filter(None, [str(data_file()),
                                                    os.environ.get("PYTHONPATH", "")])),
    }
    return base, env


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m extensions.dashboards.service "
                         f"{{{'|'.join(NOTEBOOKS)}}}")
    base, env = prepare(argv[0])
    os.chdir(base)
    exe = [sys.executable, "-m", "jupyterhub.singleuser"]
    os.execve(sys.executable, exe, {**os.environ, **env})


if __name__ == "__main__":
    main()
