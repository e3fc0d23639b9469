"""The job-side launcher (workbench-singleuser): port report, retries, refusal, hand-over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spawners import singleuser


class FakeHub:
    """A real HTTP server standing in for the hub's API: answers each POST with the next
    status of ``answers`` (the last one repeats) and records what it got."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.times = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hub.requests.append((self.path, self.headers["Authorization"],
                                     json.loads(body)))
                hub.times.append(time.time())
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


def test_the_port_is_reported_once_the_command_listens_on_it(hub_answering, tmp_path):
    """End to end through the module's main: the command finds its port in its service URL,
    and the hub hears of that port only after the command listens on it."""
    hub = hub_answering(201)
    script = tmp_path / "fake-server"
    script.write_text(
        "#!/usr/bin/env python3\nimport os, socket, sys, time, urllib.parse\n"
        "port = urllib.parse.urlsplit(os.environ['JUPYTERHUB_SERVICE_URL']).port\n"
        "time.sleep(0.5)\n"  # importing, as a real server does; nothing may be reported yet
        "s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen()\n"
        "print(time.time(), port, sys.argv[1:], flush=True)\n"
        "time.sleep(1.0)\n")  # the report comes meanwhile
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "JUPYTERHUB_API_URL": hub.url, "JUPYTERHUB_API_TOKEN": "tok",
           "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:0/user/alice/"}
    out = subprocess.run([sys.executable, "-m", "spawners.singleuser", "fake-server", "--debug"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listened_at, port, args = out.stdout.split(" ", 2)
    [(_, _, body)] = hub.requests
    assert body == {"port": int(port)} and args.strip() == "['--debug']"
    assert hub.times[0] >= float(listened_at)


def test_where_the_server_is_reached_on_its_own_node():
    assert singleuser.local_address("http://0.0.0.0:8888/user/a/") == "127.0.0.1"
    assert singleuser.local_address("http://10.1.2.3:8888/user/a/") == "10.1.2.3"
    assert singleuser.local_address("") == "127.0.0.1"
    with singleuser.socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not singleuser.wait_listening("127.0.0.1", port, timeout_s=0.2)
        s.listen()
        assert singleuser.wait_listening("127.0.0.1", port, timeout_s=5)


def test_without_hub_environment_it_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    out = subprocess.run([sys.executable, "-m", "spawners.singleuser", "true"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be set" in out.stderr
