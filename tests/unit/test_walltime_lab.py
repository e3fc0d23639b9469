"""The walltime in JupyterLab: the prebuilt extension is current, the server side finds its
hub session. (The whole path runs in tests/browser: status bar, warning, extension.)"""

import hashlib
import json
from pathlib import Path

from extensions.walltime.handlers import HubSession

WALLTIME = Path(__file__).parents[2] / "extensions" / "walltime"


def test_the_prebuilt_labextension_matches_its_source():
    src = WALLTIME / "js"
    digest = hashlib.sha256(b"".join(
        (src / name).read_bytes() for name in ("package.json", "src/index.js",
                                              "style/index.css"))).hexdigest()
    built = (WALLTIME / "labextension" / "source.sha256").read_text().strip()
    assert built == digest, "extensions/walltime/js changed: run extensions/walltime/js/build.sh"
    meta = json.loads((WALLTIME / "labextension" / "package.json").read_text())
    assert (WALLTIME / "labextension" / meta["jupyterlab"]["_build"]["load"]).is_file()


def test_the_hub_session_comes_from_the_servers_environment():
    assert HubSession.from_env({}) is None
    assert HubSession.from_env({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api/"}) is None
    session = HubSession.from_env({
        "JUPYTERHUB_API_URL": "http://10.0.0.5:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVER_NAME": "gpu run"})
    assert session.url == "http://10.0.0.5:8081/hub/api/workbench/walltime/alice/gpu%20run"
    request = session.request("GET")
    assert request.headers["Authorization"] == "token t"
