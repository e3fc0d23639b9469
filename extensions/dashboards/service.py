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

import asyncio
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session
from jupyter_core.utils import ensure_async
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyterhub.singleuser.extension import JupyterHubAuthorizer
from tornado.ioloop import IOLoop
from traitlets import Float, Integer, Type, Unicode

from workbench.paths import FactoryHome, data_file

log = logging.getLogger(__name__)

#: service name → its notebook (in the repository's ``notebooks/``)
NOTEBOOKS = {"support-dashboard": "support.ipynb", "manager-dashboard": "programmes.ipynb"}

#: service name → what its pooled kernels run before a viewer comes: the notebook's imports,
#: and the shared job history brought up to date (:func:`workbench.dashboards.source.warm`)
WARM_CODE = {name: f"import extensions.dashboards.{module}\n"
                   "from workbench.dashboards.source import warm\nwarm()"
             for name, module in (("support-dashboard", "support"),
                                  ("manager-dashboard", "manager"))}

#: kernel messages a browser may send: widget traffic only (no execute_request)
ALLOWED_MESSAGE_TYPES = ["comm_open", "comm_close", "comm_msg", "comm_info_request",
                         "kernel_info_request"]

#: the only server extensions loaded (jupyterhub-singleuser loads itself)
EXTENSIONS_ON = ("voila.server_extension",)

#: the JupyterLab frontend extensions a dashboard page loads: the widgets and the charts
#: (``js/``: plotly.js's basic bundle; jupyterlab-plotly would load the whole of plotly.js,
#: 4.8 MB, ~1 s of every first render here)
FRONTEND_EXTENSIONS = ("@voila-dashboards/widgets-manager8", "@jupyter-widgets/jupyterlab-manager",
                       "@aifactory/dashboard-charts")

#: where the charts' prebuilt extension lies (``share/labextensions/...``): on the dashboard
#: services' JUPYTER_PATH only, so the users' JupyterLab never loads it
SHARE = Path(__file__).resolve().parent / "share"

#: server extensions a dashboard service turns off even if the environment does not enable
#: them (every other extension the environment enables is turned off too)
EXTENSIONS_OFF = ("jupyterlab", "notebook", "notebook_shim", "jupyter_server_terminals",
                  "jupyter_server_proxy", "jupyter_lsp", "jupyter_server_ydoc",
                  "jupyter_server_fileid", "jupyter_collaboration", "dask_labextension",
                  "voila")


class RepollingShellChannel(AsyncZMQSocketChannel):
    """A shell channel whose wait without a timeout polls the socket afresh every second.

    Voila (nbclient) waits for each cell's ``execute_reply`` with no timeout. Now and then the
    programmes page stayed at "Executing 2 of 3" for good (2 of 93 views in one service log,
    both within a minute of a service start, and the first programmes view in two CI runs):
    the log shows the cell finished (the kernel went idle) and no reply reached Voila. A
    reply that arrived while the socket's wake-up was missed (zmq's file descriptor is
    edge-triggered) is found by a fresh poll; a wait that ends that way is logged, so the
    next occurrence says which it was."""

    repoll_s = 1.0

    async def get_msg(self, timeout: float | None = None):
        if timeout is not None:
            return await super().get_msg(timeout)
        while True:
            try:
                return await super().get_msg(self.repoll_s)
            except Empty:
                if await self.msg_ready():
                    log.warning("A kernel reply was waiting unseen on the shell channel (a "
                                "missed wake-up); picked up by a fresh poll")


class DashboardKernelClient(AsyncKernelClient):
    """The kernel client of Voila's executor and of the pool's warm-up: its shell channel
    re-polls (:class:`RepollingShellChannel`)."""

    shell_channel_class = Type(RepollingShellChannel)


class DashboardKernelManager(AsyncMappingKernelManager):
    """Kernels for page views: started ahead with the imports done, and ended when the page
    is gone.

    **Warm kernels.** Voila runs the notebook in a new kernel for each page view; starting it
    (0.7 s here) and importing pandas and the widgets (0.6-0.8 s) came before anything was
    drawn. ``pool_size`` kernels are kept started, each having run ``warm_code`` (imports, and
    the shared caches brought up to date: nothing a page shows is kept from then, so the
    figures are as fresh as without the pool), and each is handed to one page view, never
    two; a new one is started ``fill_delay`` seconds after one is handed out. Voila's own
    pool (``preheat_kernel``) exists only in its standalone app, not behind the hub. A pooled
    kernel has the service's environment, without the request's variables Voila adds
    (``VOILA_REQUEST_URL``, ``QUERY_STRING``...): the dashboards' notebooks read none.

    **Culling.** A dashboard that refreshes itself keeps its kernel active, so the usual idle
    culling never ends the kernel of a closed tab; here a kernel with no open connection is
    shut down once it is ``cull_unwatched_after`` seconds past its hand-out (the page connects
    within seconds of being rendered). Kernels waiting in the pool are not culled.
    """

    cull_unwatched_after = Float(
        120.0, min=10.0,
        help="""Seconds after its start when a kernel that no page is connected to is shut
        down (a closed tab, a viewer gone). Example: 120.""",
    ).tag(config=True)

    pool_size = Integer(
        0, min=0, max=20,
        help="""Kernels kept started and warmed for the next page views (0: none, each view
        starts its own). Each costs one idle Python process (~130 MB). Example: 1.""",
    ).tag(config=True)

    pool_kernel_name = Unicode(
        "python3",
        help="""The kernel spec of the pooled kernels; a view asking for another starts its
        own. Example: 'python3'.""",
    ).tag(config=True)

    warm_code = Unicode(
        "",
        help="""Python a pooled kernel runs before it waits: the notebook's imports, and work
        that leaves nothing a page shows (bringing the shared caches up to date). Example:
        'import extensions.dashboards.manager'.""",
    ).tag(config=True)

    fill_delay = Float(
        5.0, min=0.0,
        help="""Seconds after a pooled kernel is handed out before its replacement starts
        (so its start and imports, ~1.5 s of CPU, do not compete with the view being
        rendered). Example: 5.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._born: dict[str, float] = {}
        self._pool: list[asyncio.Future] = []
        self._pooled: set[str] = set()
        if self.pool_size:
            IOLoop.current().add_callback(self._fill_pool)

    # -- the pool ---------------------------------------------------------------------------

    def _fill_pool(self) -> None:
        while len(self._pool) < self.pool_size:
            self._pool.append(asyncio.ensure_future(self._start_pooled()))

    async def _start_pooled(self) -> str:
        kernel_id = await super().start_kernel(kernel_name=self.pool_kernel_name, path="")
        self._pooled.add(kernel_id)
        if self.warm_code:
            await self._warm(kernel_id)
        return kernel_id

    async def _warm(self, kernel_id: str) -> None:
        km = self.get_kernel(kernel_id)
        # a session of its own: km.client()'s shell socket takes the kernel manager's session
        # id as its zmq identity, and Voila's client (the next one) uses that identity
        client = km.client(session=Session(key=km.session.key,
                                           signature_scheme=km.session.signature_scheme))
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            reply = await client.execute_interactive(
                self.warm_code, silent=True, store_history=False, timeout=120,
                output_hook=lambda msg: None)
            if reply["content"].get("status") != "ok":
                self.log.warning("Pooled kernel %s: %r failed: %s", kernel_id, self.warm_code,
                                 reply["content"].get("evalue", ""))
        finally:
            client.stop_channels()

    async def _take_pooled(self) -> str | None:
        """A warm kernel for one view (None when the pool had none usable)."""
        task = self._pool.pop(0)
        IOLoop.current().call_later(self.fill_delay, self._fill_pool)
        try:
            kernel_id = await task
        except (RuntimeError, TimeoutError, OSError, KeyError) as e:
            self.log.warning("A pooled kernel did not start (the view starts its own): %s", e)
            return None
        self._pooled.discard(kernel_id)
        if kernel_id not in self or not await ensure_async(
                self.get_kernel(kernel_id).is_alive()):
            return None
        self.log.info("Kernel %s: a warm kernel from the pool", kernel_id)
        return kernel_id

    async def start_kernel(self, *args, **kwargs):
        kernel_id = None
        if (self._pool and not args and kwargs.get("kernel_id") is None
                and kwargs.get("kernel_name", self.pool_kernel_name) == self.pool_kernel_name
                and (kwargs.get("path") or "") == ""):
            kernel_id = await self._take_pooled()
        if kernel_id is None:
            kernel_id = await super().start_kernel(*args, **kwargs)
        self._born[kernel_id] = time.monotonic()
        return kernel_id

    async def cull_kernel_if_idle(self, kernel_id):
        if kernel_id in self._pooled:
            return  # waiting for a viewer
        age = time.monotonic() - self._born.get(kernel_id, time.monotonic())
        if not self._kernel_connections.get(kernel_id, 0) and age > self.cull_unwatched_after:
            self.log.info("Shutting down kernel %s: no page has watched it (%.0f s old)",
                          kernel_id, age)
            self._born.pop(kernel_id, None)
            await self.shutdown_kernel(kernel_id)
            return
        await super().cull_kernel_if_idle(kernel_id)

    async def shutdown_kernel(self, kernel_id, *args, **kwargs):
        self._pooled.discard(kernel_id)
        self._born.pop(kernel_id, None)
        return await super().shutdown_kernel(kernel_id, *args, **kwargs)


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


def server_config(root_dir: Path, environment_extensions: list[str] = (),
                  warm_code: str = "") -> dict:
    """The Jupyter Server config of a dashboard service (JSON-able): only Voila on, of the
    ``environment_extensions`` and :data:`EXTENSIONS_OFF`; one warm kernel waiting, having run
    ``warm_code``."""
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
        # Voila's executor (nbclient) makes its kernel client with km.client()
        "KernelManager": {
            "client_factory": "extensions.dashboards.service.DashboardKernelClient"},
        "DashboardKernelManager": {"cull_unwatched_after": 120, "pool_size": 1,
                                   "warm_code": warm_code},
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
        json.dumps(server_config(root, enabled_extensions(), WARM_CODE[name]), indent=2)
        + "\n")
    env = {
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERHUB_DEFAULT_URL": f"/voila/render/{notebook}",
        # the singleuser extension names the server's owner from this; a service has none
        "JUPYTERHUB_USER": name,
        "JUPYTERHUB_ACTIVITY_URL": "",
        # the charts' frontend extension (for this service only)
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(SHARE),
                                                      os.environ.get("JUPYTER_PATH", "")])),
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
