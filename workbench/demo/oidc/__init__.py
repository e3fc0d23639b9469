"""The demo profile's OpenID Connect provider, launched from Python.

``provider.mjs`` beside this module runs panva's ``oidc-provider`` (pinned in
``package.json``/``package-lock.json``) with a login page that checks an accounts file.
:class:`DemoProvider` keeps everything it needs in one home directory (mode 0700)::

    HOME/config.json     issuer, port, clients and their secrets, cookie keys (0600)
    HOME/accounts.json   the people: password and claims (0600), read at every login
    HOME/jwks.json       the signing key, made by the provider on its first start (0600)
    HOME/provider.log    what the provider prints: logins, refusals, errors
    HOME/provider.pid    pid and start time (workbench.daemons)

The node packages are installed (``npm ci``) once into an install directory, default
:data:`DEFAULT_INSTALL_DIR`, together with a copy of ``provider.mjs`` (Node resolves an ES
module's imports from the module's own directory, so the script must sit beside them).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbench import atomicfile, daemons

log = logging.getLogger(__name__)

#: where ``npm ci`` puts the provider's node_modules unless ``start`` is told otherwise
DEFAULT_INSTALL_DIR = Path("/opt/aifactory/oidc-provider")

#: the files of this package that the install directory gets a copy of
PACKAGE_FILES = ("package.json", "package-lock.json", "provider.mjs")

_SOURCE = Path(__file__).parent


def install(install_dir: Path = DEFAULT_INSTALL_DIR) -> Path:
    """Copy the provider's files into ``install_dir`` and run ``npm ci`` there unless its
    node_modules already match the pinned lock file; returns the installed ``provider.mjs``.
    Raises RuntimeError with npm's output when the install fails."""
    install_dir.mkdir(parents=True, exist_ok=True)
    lock = (_SOURCE / "package-lock.json").read_bytes()
    installed_lock = install_dir / "node_modules" / ".package-lock.json"
    fresh = (install_dir / "package-lock.json").exists() and \
        (install_dir / "package-lock.json").read_bytes() == lock and installed_lock.exists()
    for name in PACKAGE_FILES:
        data = (_SOURCE / name).read_bytes()
        target = install_dir / name
        if not target.exists() or target.read_bytes() != data:
            atomicfile.write_bytes(target, data, mode=0o644)
    if not fresh:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: the demo's OpenID provider needs Node.js "
                               "and npm (apt-get install nodejs npm)")
        argv = [npm, "ci", "--omit=dev", "--no-audit", "--no-fund"]
        log.info("installing oidc-provider into %s", install_dir)
        done = subprocess.run(argv, cwd=install_dir, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {install_dir} exited {done.returncode}:\n"
                               f"{done.stdout}\n{done.stderr}")
    return install_dir / "provider.mjs"


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class DemoProvider:
    """The demo's OpenID provider at ``issuer`` (e.g. ``http://127.0.0.1:8095``), listening on
    ``host``:``port``, its files in ``home``."""

    home: Path
    issuer: str
    port: int
    #: the address it listens on: 127.0.0.1, or 0.0.0.0 for every interface
    host: str = "127.0.0.1"

    @property
    def config_file(self) -> Path:
        return self.home / "config.json"

    @property
    def accounts_file(self) -> Path:
        return self.home / "accounts.json"

    @property
    def logfile(self) -> Path:
        return self.home / "provider.log"

    @property
    def pidfile(self) -> Path:
        return self.home / "provider.pid"

    @property
    def discovery_url(self) -> str:
        """The discovery document as this machine reaches it (the listening address, which
        may differ from the issuer's public name)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/.well-known/openid-configuration"

    def write_config(self, clients: Iterable[dict], accounts: dict[str, dict]) -> None:
        """Write the provider's config and accounts files (0600, home 0700).

        ``clients``: dicts with ``client_id``, ``client_secret``, ``redirect_uris`` and
        optionally ``token_endpoint_auth_method`` (``client_secret_post``, the default, which
        is what GenericOAuthenticator sends unless ``basic_auth`` is set, or
        ``client_secret_basic``). ``accounts``: ``{user: {"password": ..., "claims": {...}}}``
        with claims such as ``preferred_username``, ``name``, ``email`` and
        ``eduperson_entitlement`` (a list). Cookie keys already in the config are kept."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        old = json.loads(self.config_file.read_text()) if self.config_file.exists() else {}
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "host": self.host,
            "clients": [dict(c) for c in clients],
            "accounts_file": str(self.accounts_file),
            "cookie_keys": old.get("cookie_keys") or [secrets.token_urlsafe(32)],
        }
        atomicfile.write_json(self.accounts_file, accounts, indent=2)
        atomicfile.write_json(self.config_file, config, indent=2)

    def running(self) -> bool:
        """Whether the provider this home's pid file names is alive."""
        return daemons.read_pid(self.pidfile) is not None

    def start(self, install_dir: Path = DEFAULT_INSTALL_DIR, timeout: float = 30.0) -> None:
        """Install the node packages if needed (:func:`install`), start the provider as a
        daemon unless it runs, and wait until its discovery document names ``issuer``.
        Raises RuntimeError (with the log's end) if it exits, TimeoutError if it never
        answers."""
        if not self.config_file.exists():
            raise RuntimeError(f"{self.config_file} is missing: write_config() first")
        script = install(install_dir)
        if not self.running():
            node = shutil.which("node")
            if node is None:
                raise RuntimeError("node is not installed (apt-get install nodejs)")
            daemons.spawn([node, str(script), str(self.config_file)], self.logfile,
                          self.pidfile, cwd=self.home)

        def ready() -> bool:
            if not self.running():
                tail = self.logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"oidc-provider exited; {self.logfile} ends:\n{tail}")
            doc = _get_json(self.discovery_url)
            return bool(doc) and doc.get("issuer") == self.issuer

        daemons.wait_until(ready, f"oidc-provider at {self.discovery_url}", timeout)

    def stop(self) -> bool:
        """Stop the provider; True if it was running. Its sessions and tokens (kept in
        memory) are gone; the config, accounts and signing key stay."""
        return daemons.stop("oidc-provider", self.pidfile)

    def discovery(self) -> dict:
        """The provider's discovery document (``/.well-known/openid-configuration``)."""
        with urllib.request.urlopen(self.discovery_url, timeout=5) as r:
            return json.load(r)

    def set_entitlements(self, user: str, values: Iterable[str]) -> None:
        """Give ``user`` exactly the entitlements ``values`` (the ``eduperson_entitlement``
        claim), rewriting the accounts file at once; the next login and userinfo call see
        them. KeyError if the provider has no account ``user``."""
        accounts = json.loads(self.accounts_file.read_text())
        if user not in accounts:
            raise KeyError(f"no account {user!r} in {self.accounts_file}")
        accounts[user].setdefault("claims", {})["eduperson_entitlement"] = list(values)
        atomicfile.write_json(self.accounts_file, accounts, indent=2)
