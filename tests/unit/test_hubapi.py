"""The one hub client: token, pagination, errors. Against a real HTTP server that answers the
way JupyterHub 5 does (the hub itself is in the integration tests: reconciler, help, walltime,
dashboards)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from workbench.hubapi import PAGINATION, HubAPIError, HubClient

USERS = [{"name": f"user{i:03d}"} for i in range(7)]


class Hub:
    def __init__(self):
        self.seen = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, body, content_type="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                hub.seen.append((self.path, self.headers["Authorization"],
                                 self.headers["Accept"]))
                if url.path == "/hub/api/old/users":  # a hub before pagination: a list
                    return self._answer(200, USERS[:3])
                if url.path == "/hub/api/users":
                    offset, limit = int(q["offset"]), int(q["limit"])
                    nxt = offset + limit
                    return self._answer(200, {
                        "items": USERS[offset:nxt],
                        "_pagination": {"offset": offset, "limit": limit, "total": len(USERS),
                                        "next": {"offset": nxt, "limit": limit}
                                        if nxt < len(USERS) else None}})
                if url.path == "/hub/api/users/nobody":
                    return self._answer(404, {"status": 404, "message": "No such user nobody"})
                if url.path == "/hub/api/proxy-error":
                    return self._answer(502, b"<html>Bad Gateway</html>", "text/html")
                return self._answer(200, {"path": url.path})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hub.seen.append((self.path, self.headers["Content-Type"], body))
                self._answer(201, {"got": body})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hub():
    h = Hub()
    yield h
    h.server.shutdown()
    h.server.server_close()


def test_every_page_is_read_with_the_token(hub):
    client = HubClient(hub.url, "secret")
    names = [u["name"] for u in client.paged("users", {"state": "active"}, page=3)]
    assert names == [u["name"] for u in USERS]  # 3 pages of 3, 3 and 1
    assert len(hub.seen) == 3
    assert all(auth == "token secret" and accept == PAGINATION for _, auth, accept in hub.seen)
    assert "state=active" in hub.seen[0][0] and "offset=6" in hub.seen[2][0]


def test_a_hub_without_pagination_is_read_as_one_page(hub):
    client = HubClient(hub.url, "t")
    assert [u["name"] for u in client.paged("old/users")] == ["user000", "user001", "user002"]
    assert len(hub.seen) == 1


def test_a_refusal_carries_the_hubs_message_and_status(hub):
    client = HubClient(hub.url, "t")
    with pytest.raises(HubAPIError, match="No such user nobody") as e:
        client.request("GET", "users/nobody")
    assert e.value.status == 404 and not e.value.unreachable
    assert client.request("GET", "users/nobody", ok=(200, 404)).status == 404
    assert client.request("GET", "users/nobody", ok=None).message == "No such user nobody"
    with pytest.raises(HubAPIError) as e:
        client.request("GET", "proxy-error")
    assert e.value.status == 502 and e.value.unreachable and "Bad Gateway" in e.value.message


def test_json_goes_out_with_its_content_type_and_coroutines_do_not_block(hub):
    client = HubClient(hub.url, "t")
    reply = asyncio.run(client.arequest("POST", "shares/alice/", json={"user": "sam"}))
    assert (reply.status, reply.data) == (201, {"got": {"user": "sam"}})
    assert hub.seen[-1] == ("/hub/api/shares/alice/", "application/json", {"user": "sam"})


def test_no_answer_is_status_zero_and_no_token_is_refused_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed: connection refused
    with pytest.raises(HubAPIError) as e:
        HubClient(f"http://127.0.0.1:{port}/hub/api", "t", timeout=2).request("GET", "users")
    assert e.value.status == 0 and e.value.unreachable
    with pytest.raises(ValueError, match="no token"):
        HubClient("http://hub/hub/api", "")
    assert HubClient.from_env({"JUPYTERHUB_API_URL": "http://hub/hub/api"}) is None
    tls = HubClient.from_env({"JUPYTERHUB_API_URL": "https://hub/hub/api",
                              "JUPYTERHUB_API_TOKEN": "t",
                              "JUPYTERHUB_SSL_CLIENT_CA": "/ca.pem"})
    assert tls.http.connection_pool_kw["ca_certs"] == "/ca.pem"
