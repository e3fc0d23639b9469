"""``workbench-singleuser``: the job side of a notebook session.

The job script runs ``workbench-singleuser jupyterhub-singleuser [ARGS...]``. This picks a
free port, starts the server on it and tells the hub the port (``POST
$JUPYTERHUB_API_URL/batchspawner {"port": N}``, the route of :mod:`spawners.api`).

It replaces ``batchspawner-singleuser``, which imports JupyterHub and requests (~0.6 s on the
local cluster) and reports the port *before* the server starts importing. Here the report
runs in a thread, on the standard library only, while the server imports in the main thread:
the hub learns the port ~0.1 s after the job starts and is waiting when the server listens.
Nothing here may import JupyterHub or the workbench's hub side: it runs first in every job.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit, urlunsplit

REPORT_TIMEOUT_S = 120.0  # the hub may be restarting; it re-adopts the job within this


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice, as batchspawner does)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def with_port(url: str, port: int) -> str:
    """``url`` with its port replaced (JUPYTERHUB_SERVICE_URL, where the server binds)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{port}"))


def _connection(url, timeout: float):
    if url.scheme != "https":
        return HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    # the hub's internal_ssl: the same files JupyterHub gives the single-user server
    context = ssl.create_default_context(cafile=os.environ.get("JUPYTERHUB_SSL_CLIENT_CA"))
    if os.environ.get("JUPYTERHUB_SSL_CERTFILE"):
        context.load_cert_chain(os.environ["JUPYTERHUB_SSL_CERTFILE"],
                                os.environ.get("JUPYTERHUB_SSL_KEYFILE"))
    return HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=context)


def report_port(api_url: str, token: str, port: int, timeout_s: float = REPORT_TIMEOUT_S,
                log=None) -> bool:
    """POST the port to the hub until it answers (retrying while it is unreachable or 5xx,
    with back-off, for ``timeout_s``). A 4xx is final: the hub does not expect this job."""
    log = log or sys.stderr
    url = urlsplit(api_url.rstrip("/") + "/batchspawner")
    body = json.dumps({"port": port})
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        conn = _connection(url, timeout=10)
        try:
            conn.request("POST", url.path, body=body, headers=headers)
            response = conn.getresponse()
            status, text = response.status, response.read(500).decode(errors="replace")
        except (OSError, HTTPException) as e:
            status, text = 0, str(e)
        finally:
            conn.close()
        if 200 <= status < 300:
            return True
        if 400 <= status < 500:
            print(f"workbench-singleuser: the hub refused port {port}: {status} {text}",
                  file=log, flush=True)
            return False
        if time.monotonic() + delay > deadline:
            print(f"workbench-singleuser: could not reach the hub at {api_url} for "
                  f"{timeout_s:.0f} s ({status or 'no answer'}: {text})", file=log, flush=True)
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


USAGE = """usage: workbench-singleuser COMMAND [ARGS...]

Run COMMAND (found on PATH, a Python console script such as jupyterhub-singleuser) in this
process on a free port, and report the port to the hub that submitted this job
($JUPYTERHUB_API_URL, $JUPYTERHUB_API_TOKEN). If the hub refuses the port, or cannot be
reached for {timeout:.0f} s, the server is stopped: nobody could reach it."""


def _report_or_stop(api_url: str, token: str, port: int) -> None:
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
    if os.environ.get("JUPYTERHUB_SERVICE_URL"):
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(os.environ["JUPYTERHUB_SERVICE_URL"],
                                                         port)
    else:
        argv.append(f"--port={port}")
    threading.Thread(target=_report_or_stop, args=(api_url, token, port), daemon=True,
                     name="port-report").start()
    sys.argv = [command, *argv[1:]]
    runpy.run_path(command, run_name="__main__")


if __name__ == "__main__":
    main()
