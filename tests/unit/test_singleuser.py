"""The job-side launcher (workbench-singleuser): port report, retries, refusal, hand-over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spawners import singleuser


class FakeHub:
    """A real HTTP server standing in for the hub's API: answers each POST with the next
    status of ``answers`` (the last one repeats) and records what it got."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hub.requests.append((self.path, self.headers["Authorization"],
                                     json.loads(body)))
                status = hub.answers.pop(0) if len(hub.answers) > 1 else hub.answers[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"message": "x"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_answering(request):
    hubs = []

    def make(*answers):
        hubs.append(FakeHub(answers))
        return hubs[-1]

    yield make
    for h in hubs:
        h.close()


def test_the_port_goes_to_the_batchspawner_route_with_the_token(hub_answering):
    hub = hub_answering(201)
    assert singleuser.report_port(hub.url, "secret-token", 12345)
    assert hub.requests == [("/hub/api/batchspawner", "token secret-token", {"port": 12345})]


def test_a_hub_that_is_restarting_is_retried(hub_answering):
    hub = hub_answering(503, 502, 201)
    assert singleuser.report_port(hub.url, "t", 2000, timeout_s=10)
    assert len(hub.requests) == 3


def test_a_refusal_is_final_and_said(hub_answering, capsys):
    hub = hub_answering(403)
    assert not singleuser.report_port(hub.url, "t", 2000, timeout_s=10)
    assert len(hub.requests) == 1
    assert "the hub refused port 2000: 403" in capsys.readouterr().err


def test_an_unreachable_hub_gives_up_after_the_timeout(capsys):
    with singleuser.socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: connection refused
    assert not singleuser.report_port(f"http://127.0.0.1:{port}/hub/api", "t", 2000,
                                      timeout_s=0.5)
    assert "could not reach the hub" in capsys.readouterr().err


def test_the_service_url_gets_the_chosen_port():
    assert singleuser.with_port("http://10.0.0.5:0/user/alice/", 4242) == \
        "http://10.0.0.5:4242/user/alice/"


def test_the_command_runs_in_process_on_the_reported_port(hub_answering, tmp_path):
    """End to end through the console script: the command sees the port in its service URL,
    and the hub got the same port."""
    hub = hub_answering(201)
    script = tmp_path / "show-port"
    script.write_text("#!/usr/bin/env python3\nimport os, sys, time\n"
                      "time.sleep(0.5)\n"  # the report runs meanwhile
                      "print(os.environ['JUPYTERHUB_SERVICE_URL'], sys.argv[1:])\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "JUPYTERHUB_API_URL": hub.url, "JUPYTERHUB_API_TOKEN": "tok",
           "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0/user/alice/"}
    out = subprocess.run([sys.executable, "-m", "spawners.singleuser", "show-port", "--debug"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    [(_, _, body)] = hub.requests
    assert out.stdout.strip() == f"http://127.0.0.1:{body['port']}/user/alice/ ['--debug']"


def test_without_hub_environment_it_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    out = subprocess.run([sys.executable, "-m", "spawners.singleuser", "true"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be set" in out.stderr
