"""``workbench-singleuser``: the job side of a notebook session.

The job script runs ``workbench-singleuser jupyterhub-singleuser [ARGS...]``. This picks a
free port, starts the server on it and tells the hub the port (``POST
$JUPYTERHUB_API_URL/batchspawner {"port": N}``, the route of :mod:`spawners.api`).

It replaces ``batchspawner-singleuser``, which imports JupyterHub and requests (~0.6 s on the
local cluster) and reports the port *before* the server starts importing, so the hub then
polls the node until the server listens. Here a thread watches the port on the node itself
while the server imports and starts in the main thread, and reports the port (with the one
hub client, :mod:`workbench.hubapi`) the moment the server accepts connections: the hub's
first look finds it up. Nothing here may import JupyterHub or the workbench's hub side: it
runs first in every job.

Before the server imports, :func:`defer_iri_checker` keeps ``rfc3987_syntax`` from loading at
start: ``jsonschema`` (imported by Jupyter Server's event logger) imports it for its ``iri``
format check, and it builds its ~35 parsers at import: 0.77-0.9 s of the 1.3 s that importing
Jupyter Server takes here (python-jsonschema/jsonschema#1428). No schema a session's server
validates at start uses that format; it loads at the first ``iri`` check instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import runpy
import shutil
import signal
import socket
import sys
import threading
import time
import types
from urllib.parse import urlsplit, urlunsplit

REPORT_TIMEOUT_S = 120.0  # the hub may be restarting; it re-adopts the job within this
LISTEN_TIMEOUT_S = 600.0  # after this, report the port anyway and let the hub wait


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice, as batchspawner does)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def local_address(service_url: str) -> str:
    """Where to reach the server from its own node: the host it binds, or loopback when it
    binds every interface."""
    host = urlsplit(service_url).hostname if service_url else None
    return host if host and host not in ("0.0.0.0", "::") else "127.0.0.1"


def wait_listening(host: str, port: int, timeout_s: float = LISTEN_TIMEOUT_S) -> bool:
    """Until ``host:port`` accepts a connection (checked every 5-50 ms on the node itself)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
    return False


def with_port(url: str, port: int) -> str:
    """``url`` with its port replaced (JUPYTERHUB_SERVICE_URL, where the server binds)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def report_port(api_url: str, token: str, port: int, timeout_s: float = REPORT_TIMEOUT_S,
                log=None) -> bool:
    """POST the port to the hub until it answers (retrying while it is unreachable or 5xx,
    with back-off, for ``timeout_s``). A 4xx is final: the hub does not expect this job."""
    from workbench.hubapi import HubAPIError, HubClient, TLSFiles
    log = log or sys.stderr
    hub = HubClient(api_url, token, timeout=10, tls=TLSFiles.from_env(), maxsize=1)
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            hub.request("POST", "batchspawner", json={"port": port})
            return True
        except HubAPIError as e:
            if not e.unreachable:
                print(f"workbench-singleuser: the hub refused port {port}: {e.status} "
                      f"{e.message}", file=log, flush=True)
                return False
            failure = f"{e.status or 'no answer'}: {e.message}"
        if time.monotonic() + delay > deadline:
            print(f"workbench-singleuser: could not reach the hub at {api_url} for "
                  f"{timeout_s:.0f} s ({failure})", file=log, flush=True)
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


#: modules whose functions load at their first call, not at import: (module, functions)
DEFERRED = (("rfc3987_syntax", ("is_valid_syntax",)),)


def defer_iri_checker(deferred=DEFERRED) -> list[str]:
    """Put a stand-in in ``sys.modules`` for each installed, not yet imported module of
    ``deferred`` whose functions import the real module at their first call (and use it from
    then on); returns the modules deferred."""
    done = []
    for name, functions in deferred:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        stand_in = types.ModuleType(name, f"{name}, loaded at the first call of "
                                          f"{', '.join(functions)} (workbench-singleuser)")
        for function in functions:
            setattr(stand_in, function, _loads_on_call(stand_in, name, function))
        sys.modules[name] = stand_in
        done.append(name)
    return done


def _loads_on_call(stand_in: types.ModuleType, module: str, function: str):
    real = None

    def call(*args, **kwargs):
        nonlocal real
        if real is None:
            if sys.modules.get(module) is stand_in:
                del sys.modules[module]
            real = getattr(importlib.import_module(module), function)
        return real(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    return call


USAGE = """usage: workbench-singleuser COMMAND [ARGS...]

Run COMMAND (found on PATH, a Python console script such as jupyterhub-singleuser) in this
process on a free port, and report the port to the hub that submitted this job
($JUPYTERHUB_API_URL, $JUPYTERHUB_API_TOKEN) as soon as the server listens on it. If the
hub refuses the port, or cannot be reached for {timeout:.0f} s, the server is stopped: nobody
could reach it."""


def _report_when_listening(api_url: str, token: str, host: str, port: int) -> None:
    import workbench.hubapi  # noqa: F401  (imported while the server imports, not after)
    wait_listening(host, port)
    if not report_port(api_url, token, port):
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(timeout=REPORT_TIMEOUT_S), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        sys.exit("workbench-singleuser: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be set "
                 "(it runs inside a job the hub submitted)")
    command = shutil.which(argv[0])
    if command is None:
        sys.exit(f"workbench-singleuser: {argv[0]} not found on PATH")
    port = free_port()
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    if service_url:
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(service_url, port)
    else:
        argv.append(f"--port={port}")
    threading.Thread(target=_report_when_listening, daemon=True, name="port-report",
                     args=(api_url, token, local_address(service_url), port)).start()
    defer_iri_checker()
    sys.argv = [command, *argv[1:]]
    runpy.run_path(command, run_name="__main__")


if __name__ == "__main__":
    main()
