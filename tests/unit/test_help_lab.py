"""Ask for help in JupyterLab: the prebuilt extension is current and installed with the
project, with the server extensions that serve it and guard shared sessions. (The whole path
runs in tests/browser/test_pair_debugging.py.)"""

import json
import tomllib
from pathlib import Path

from tests.labextension import check_prebuilt

ROOT = Path(__file__).parents[2]
HELP = ROOT / "extensions" / "help"


def test_the_prebuilt_labextension_matches_its_source():
    meta = check_prebuilt(HELP / "js", HELP / "labextension",
                          ("package.json", "src/index.js", "style/index.css"))
    assert meta["name"] == "@aifactory/workbench-help"


def test_the_extensions_are_installed_and_enabled_in_every_session():
    shared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["wheel"]["shared-data"]
    assert shared["extensions/help/labextension"] == \
        "share/jupyter/labextensions/@aifactory/workbench-help"
    for name, module in (("help", "extensions.help"), ("revocation", "extensions.revocation")):
        config = f"extensions/{name}/jupyter-config/workbench_{name}.json"
        assert shared[config] == f"etc/jupyter/jupyter_server_config.d/workbench_{name}.json"
        enabled = json.loads((ROOT / config).read_text())["ServerApp"]["jpserver_extensions"]
        assert enabled == {module: True}
