"""The walltime in JupyterLab: the prebuilt extension is current, the server side finds its
hub session. (The whole path runs in tests/browser: status bar, warning, extension.)"""

from pathlib import Path

from extensions.walltime.handlers import HubSession
from tests.labextension import check_prebuilt

WALLTIME = Path(__file__).parents[2] / "extensions" / "walltime"


def test_the_prebuilt_labextension_matches_its_source():
    check_prebuilt(WALLTIME / "js", WALLTIME / "labextension",
                   ("package.json", "src/index.js", "style/index.css"))


def test_the_hub_session_comes_from_the_servers_environment():
    assert HubSession.from_env({}) is None
    assert HubSession.from_env({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api/"}) is None
    session = HubSession.from_env({
        "JUPYTERHUB_API_URL": "http://10.0.0.5:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVER_NAME": "gpu run"})
    assert session.url == "http://10.0.0.5:8081/hub/api/workbench/walltime/alice/gpu%20run"
    hub = session.hub()
    assert hub.url_of(session.path) == session.url
    assert hub.headers["Authorization"] == "token t"
    tls = HubSession.from_env({
        "JUPYTERHUB_API_URL": "https://10.0.0.5:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_USER": "alice", "JUPYTERHUB_SSL_CERTFILE": "/c.pem",
        "JUPYTERHUB_SSL_KEYFILE": "/k.pem", "JUPYTERHUB_SSL_CLIENT_CA": "/ca.pem"})
    assert tls.tls == ("/c.pem", "/k.pem", "/ca.pem")
