"""A service that is down, as its users meet it: the dataset picker, ``af.open_dataset`` and
the help client say in a sentence that the service is not answering, never with urllib3's
traceback, and the picker stays usable. Against real sockets: a closed port (connection
refused), a tiny HTTP server answering the proxy's 503 HTML page (what the hub's proxy
answers for a service that is down), and one that accepts and never answers (a timeout)."""

from __future__ import annotations

import json
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from jupyter_server.auth import IdentityProvider, User
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

import aifactory
from extensions.help.handlers import HelpClient, HelpUnavailable, setup_handlers
from extensions.widgets.picker import DatasetPicker
from workbench.catalogue import client as catalogue_client
from workbench.catalogue.client import CatalogueClient, CatalogueUnavailable
from workbench.hubapi import HubAPIError, HubClient

PROXY_503 = (b"<!DOCTYPE HTML><html><head><title>503: Service Unavailable</title></head>"
             b"<body><h1>503: Service Unavailable</h1></body></html>")
DATASETS = [{"id": "grid-load", "title": "Grid load", "data_space": "energy",
             "licence": "https://creativecommons.org/licenses/by/4.0/",
             "licence_title": "CC BY 4.0", "formats": ["PARQUET"],
             "access": {"status": "refused", "reason": "not your programme"},
             "publisher": {"name": "Grid operator"}, "description": "Hourly load",
             "byte_size": 1000, "personal_data": False, "who_may_use": "everyone"}]
#: what only an HTTP library's own text or a proxy's page holds
NOT_FOR_USERS = ("urllib3", "HTTPConnection", "Max retries", "<html", "<!DOCTYPE")


class Service:
    """A real HTTP server on a free port: ``answer`` is (status, content type, body), which
    a test changes to bring the service back."""

    def __init__(self):
        self.answer = (503, "text/html", PROXY_503)
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                status, ctype, body = service.answer
                if callable(body):
                    body = body(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/x/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def catalogue_answers(self) -> None:
        def body(path):
            if "/datasets/" in path:
                return json.dumps(DATASETS[0]).encode()
            return json.dumps({"datasets": DATASETS, "count": 1}).encode()
        self.answer = (200, "application/json", body)


@pytest.fixture
def down():
    s = Service()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/services/x/"  # nothing listens: connection refused


@pytest.fixture
def silent_url():
    """A socket that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/services/x/"


@pytest.fixture(params=["refused", "proxy-503", "timeout"])
def unavailable(request, closed_url, down, silent_url):
    return {"refused": closed_url, "proxy-503": down.url, "timeout": silent_url}[request.param]


def shown_to_user(e: BaseException) -> str:
    """What a notebook prints for ``e``: its whole traceback, chained causes included."""
    return "".join(traceback.format_exception(e))


def test_no_answer_is_said_in_plain_words(closed_url, silent_url):
    with pytest.raises(HubAPIError) as e:
        HubClient(closed_url, "t", timeout=1).request("GET", "api/datasets")
    assert e.value.status == 0 and e.value.message == "the connection was refused"
    with pytest.raises(HubAPIError) as e:
        HubClient(silent_url, "t", timeout=0.3).request("GET", "api/datasets")
    assert e.value.message == "no answer within 0.3 s"


def test_the_catalogue_client_says_the_service_is_not_answering(unavailable):
    client = CatalogueClient(url=unavailable, token="t", timeout=0.5)
    for call in (client.datasets, lambda: client.dataset("grid-load"),
                 lambda: client.open("grid-load")):
        with pytest.raises(CatalogueUnavailable) as e:
            call()
        assert str(e.value).startswith("The catalogue service is not answering (")
        assert str(e.value).endswith("); try again in a minute.")
        assert e.value.__cause__ is None and e.value.__suppress_context__
        assert not any(w in shown_to_user(e.value) for w in NOT_FOR_USERS), \
            shown_to_user(e.value)
        assert unavailable in e.value.detail  # for support: what was asked, of whom


def test_open_dataset_in_a_session_raises_the_projects_error(down, monkeypatch):
    monkeypatch.setenv("AIFACTORY_SERVICES", json.dumps({"catalogue": down.url}))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setattr(catalogue_client, "_default", None)
    with pytest.raises(CatalogueUnavailable, match=r"^The catalogue service is not answering "
                       r"\(HTTP 503\); try again in a minute\.$") as e:
        aifactory.open_dataset("grid-load")
    assert not any(w in shown_to_user(e.value) for w in NOT_FOR_USERS)


def test_a_service_that_fails_with_its_own_message_says_so(down):
    down.answer = (500, "application/json", b'{"message": "Internal Server Error"}')
    with pytest.raises(CatalogueUnavailable, match=r"^The catalogue service failed \(HTTP 500: "
                       r"Internal Server Error\); try again in a minute\.$"):
        CatalogueClient(url=down.url, token="t", timeout=1).datasets()


def test_the_picker_says_so_stays_usable_and_tries_again(down):
    picker = DatasetPicker(CatalogueClient(url=down.url, token="t", timeout=1))
    assert picker.status == ("The catalogue service is not answering (HTTP 503); try again "
                             "in a minute.")
    assert "not answering" in picker.status_line.value
    assert picker.retry.layout.display != "none" and picker.list.options == ()
    picker.search.value = "grid"  # a search while it is down: the same sentence, no traceback
    assert picker.status.startswith("The catalogue service is not answering")
    picker.retry.click()
    assert picker.status.startswith("The catalogue service is not answering")
    down.catalogue_answers()  # the service is back
    picker.retry.click()
    assert picker.status == "1 dataset(s)" and picker.retry.layout.display == "none"
    assert picker.list.options == (("Grid load (no access)", "grid-load"),)
    assert picker.data_space.options == ("any", "energy")  # the filters filled in at last
    picker.list.value = "grid-load"
    assert picker.access == "refused" and picker.status.startswith("You may not use Grid load")


def test_the_help_client_says_the_help_service_is_not_answering(unavailable):
    client = HelpClient(unavailable, "t", "alice", "")
    with pytest.raises(HelpUnavailable) as e:
        client.request("GET", "api/requests", timeout=0.5)
    assert str(e.value).startswith("The help service is not answering (")
    assert str(e.value).endswith("); try again in a minute.")
    assert e.value.__cause__ is None
    assert not any(w in shown_to_user(e.value) for w in NOT_FOR_USERS), shown_to_user(e.value)


def test_the_help_client_passes_refusals_on_and_words_the_services_own_failures(down):
    client = HelpClient(down.url, "t", "alice", "")
    down.answer = (409, "application/json", b'{"message": "this server has an open request"}')
    assert client.request("POST", "api/requests", b"{}") == (
        409, {"message": "this server has an open request"})
    # the help service itself answers 502 when the hub does not answer it
    down.answer = (502, "application/json", b'{"message": "the hub refused GET shares/alice/"}')
    with pytest.raises(HelpUnavailable, match=r"^The help service failed \(HTTP 502: the hub "
                       r"refused GET shares/alice/\); try again in a minute\.$"):
        client.request("GET", "api/access")


class Owner(IdentityProvider):
    """The session's owner is logged in (the hub's OAuth, in a real session)."""

    def get_user(self, handler):
        return User("alice")


@pytest.mark.parametrize("service", ["refused", "proxy-503"])
async def test_jupyterlabs_help_calls_get_a_json_message_while_the_service_is_down(
        service, closed_url, down, monkeypatch):
    """The session's own ``workbench/help`` (the real Jupyter server handlers, in a Tornado
    app on a real port) answers 503 with the sentence JupyterLab shows, for each call."""
    url = {"refused": closed_url, "proxy-503": down.url}[service]
    monkeypatch.setenv("AIFACTORY_SERVICES", json.dumps({"help": url}))
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    app = web.Application([], base_url="/", identity_provider=Owner(),
                          disable_check_xsrf=True)
    setup_handlers(type("ServerApp", (), {"web_app": app}))
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    why = "the connection was refused" if service == "refused" else "HTTP 503"
    try:
        for method, path, body in (("GET", "", None), ("POST", "", b'{"message": "help"}'),
                                   ("DELETE", "/7", None)):
            with pytest.raises(HTTPClientError) as e:
                await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/workbench/help{path}",
                                              method=method, body=body, request_timeout=5)
            assert e.value.code == 503, (method, e.value.response.body)
            assert e.value.response.headers["Content-Type"] == "application/json"
            assert json.loads(e.value.response.body)["message"] == (
                f"The help service is not answering ({why}); try again in a minute.")
    finally:
        server.stop()
