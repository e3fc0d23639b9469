"""What a session's server imports before its first request: the workbench's server extensions
load without JupyterHub where there is no hub, the revocation guard is in place before the
server listens where there is one, and the launcher defers jsonschema's ``iri`` checker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from jupyterhub.services.auth import HubOAuth
from traitlets.config import LoggingConfigurable

from extensions import revocation
from extensions.revocation.guard import TieredCache
from spawners import singleuser

#: what must not be imported by loading the workbench's extensions in a server without a hub
HEAVY = ("jupyterhub", "extensions.revocation.guard", "workbench.hubapi", "urllib3",
         "sqlalchemy")


def fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on its path); it prints one
    JSON line, returned."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_without_a_hub_the_extensions_load_and_import_nothing_heavy():
    got = fresh(f"""
        import json, sys
        from jupyter_server.auth import IdentityProvider
        from traitlets.config import LoggingConfigurable
        import extensions.help, extensions.revocation, extensions.walltime

        class Web:
            settings = {{"base_url": "/"}}
            routes = []

            def add_handlers(self, host, handlers):
                self.routes += [route for route, *_ in handlers]

        class App(LoggingConfigurable):  # what the extensions use of a ServerApp
            identity_provider = IdentityProvider()
            web_app = Web()

        for ext in (extensions.help, extensions.revocation, extensions.walltime):
            ext._load_jupyter_server_extension(App())
        print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules],
                          "routes": App.web_app.routes}}))
        """)
    assert got["loaded"] == []
    assert any("workbench/help" in r for r in got["routes"])
    assert any("workbench/walltime" in r for r in got["routes"])


class FakeServer(LoggingConfigurable):
    """A ServerApp as the guard sees it: its identity provider and that one's ``hub_auth``."""

    def __init__(self, identity_provider, **kwargs):
        super().__init__(**kwargs)
        self.identity_provider = identity_provider


class HubIdentity:
    def __init__(self):
        self.hub_auth = HubOAuth(api_token="t", api_url="http://127.0.0.1:1/hub/api",
                                 cache_max_age=300)

    async def get_user(self, handler):
        return None


def test_in_a_hubs_session_the_guard_is_installed_when_the_extension_loads(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    idp = HubIdentity()
    unguarded = idp.get_user
    revocation._load_jupyter_server_extension(FakeServer(idp))
    assert isinstance(idp.hub_auth.cache, TieredCache) and idp.hub_auth.cache.owner == "alice"
    assert idp.get_user != unguarded  # every request and websocket goes through the guard


def test_without_a_hub_the_guard_is_not_installed():
    class Plain:
        async def get_user(self, handler):
            return None

    idp = Plain()
    unguarded = idp.get_user
    revocation._load_jupyter_server_extension(FakeServer(idp))
    assert idp.get_user == unguarded


def test_the_launcher_defers_the_iri_checker_and_it_still_checks():
    got = fresh("""
        import json, sys
        from spawners.singleuser import defer_iri_checker
        deferred = defer_iri_checker()
        import jupyter_server.serverapp  # imports jsonschema's format checkers
        at_start = "lark" in sys.modules or "rfc3987_syntax.syntax_helpers" in sys.modules
        from jsonschema import FormatChecker
        checks = [FormatChecker().conforms(v, "iri") for v in ("http://ex.org/\u00e4", "a b")]
        print(json.dumps({"deferred": deferred, "at_start": at_start, "checks": checks,
                          "real_after": "rfc3987_syntax.syntax_helpers" in sys.modules}))
        """)
    assert got == {"deferred": ["rfc3987_syntax"], "at_start": False, "checks": [True, False],
                   "real_after": True}


def test_only_installed_modules_not_yet_imported_are_deferred(monkeypatch):
    assert singleuser.defer_iri_checker((("no_such_module_here", ("f",)),)) == []
    assert singleuser.defer_iri_checker((("json", ("dumps",)),)) == []  # imported already
    assert sys.modules["json"].dumps is json.dumps


def test_the_launcher_runs_its_command_with_the_checker_deferred(tmp_path):
    script = tmp_path / "fake-server"
    script.write_text("#!/usr/bin/env python3\nimport sys\n"
                      "m = sys.modules.get('rfc3987_syntax')\n"
                      "print(m is not None and 'loaded at the first call' in (m.__doc__ or ''))\n")
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api", "JUPYTERHUB_API_TOKEN": "tok",
           "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-m", "spawners.singleuser", "fake-server"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
