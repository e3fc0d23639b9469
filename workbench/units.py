"""A site's systemd units: ``workbench site units --output DIR``.

One unit per daemon of the table (:mod:`workbench.daemontable`: the proxy, the hub, each hub
service), ``aifactory-NAME.service``, with the table's command line and environment, so a
site's units run what ``workbench up`` runs. Like Debian's own units for slurmctld and munge:

- ``Restart=on-failure``; its log appended to ``AIFACTORY_HOME/log/NAME.log``, as the demo's;
- ``User=root`` only for a daemon the table says must be root, and why, in a comment; the
  others run as a user systemd makes for them (``DynamicUser=yes``: no account to create);
- its tokens in an ``EnvironmentFile=``, ``AIFACTORY_HOME/etc/units/aifactory-NAME.env``
  (root-only, mode 0600), never in the unit's text (so is a database URL with a password);
- ordering: every daemon that uses Slurm and the database starts after munge and slurmctld
  and, for a PostgreSQL site, postgresql; the hub after the proxy, the services after the
  hub. ``Wants=`` pulls in what runs on the hub's machine (munge, the proxy, the hub, a local
  PostgreSQL), never slurmctld: at a site the controller usually runs elsewhere, and a unit
  that is installed there but meant to stay off must not be started by the hub.

Every file is replaced whole or not at all (:mod:`workbench.atomicfile`).
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import atomicfile
from .daemontable import Daemon, table

PREFIX = "aifactory-"
#: hosts whose database runs on the hub's own machine (its unit is pulled in)
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


class UnitError(ValueError):
    """The units cannot be written (a program missing, a value systemd cannot hold)."""


@dataclass(frozen=True)
class Written:
    """What :func:`write` wrote: the units (in the output directory) and their environment
    files (under the site's ``etc/units/``)."""

    units: list[Path]
    env_files: list[Path]


def unit_name(name: str) -> str:
    return f"{PREFIX}{name}.service"


def env_dir(site) -> Path:
    """Where the units' environment files (their tokens) live: root-only."""
    return site.home.etc / "units"


def _quote(word: str, exec_line: bool) -> str:
    """One word of ``ExecStart=`` or ``Environment=`` (systemd.syntax(7)): quoted with C
    escapes unless plain; ``%`` doubled (a specifier), and ``$`` in a command line (a
    variable)."""
    if "\n" in word or "\0" in word:
        raise UnitError(f"{word!r}: a unit cannot hold a newline or NUL")
    word = word.replace("%", "%%")
    if exec_line:
        word = word.replace("$", "$$")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _path(path: Path) -> str:
    """An absolute path as a unit setting takes it: ``%`` doubled; no blanks or quotes."""
    text = str(path)
    if not path.is_absolute() or not _PLAIN.fullmatch(text):
        raise UnitError(f"{text!r}: a unit needs an absolute path without blanks or quotes")
    return text.replace("%", "%%")


def _env_line(key: str, value: str) -> str:
    """``KEY="VALUE"`` of an environment file (systemd.exec(5): shell-like quoting)."""
    if "\n" in value or "\0" in value:
        raise UnitError(f"{key}: an environment file cannot hold a newline or NUL")
    escaped = re.sub(r'(["\\`$])', r"\\\1", value)
    return f'{key}="{escaped}"'


def _holds_password(value: str) -> bool:
    """Whether ``value`` is a URL with a password in it (a database URL may be)."""
    return "://" in value and bool(urlsplit(value).password)


def hidden_env(d: Daemon) -> dict[str, str]:
    """What goes into ``d``'s environment file: its tokens, and any variable of its
    environment that holds a password (a database URL with one)."""
    return {**{k: v for k, v in d.environment.items() if _holds_password(v)}, **d.secrets()}


def system_units(site, d: Daemon) -> tuple[list[str], list[str]]:
    """The machine's units ``d`` starts after, and those of them it pulls in."""
    after, wants = ["network-online.target"], ["network-online.target"]
    if d.cluster:
        after += ["munge.service", "slurmctld.service"]
        wants += ["munge.service"]
        if site.database.startswith("postgresql"):
            after.append("postgresql.service")
            if (urlsplit(site.database).hostname or "") in LOCAL_HOSTS:
                wants.append("postgresql.service")
    return after, wants


def render(site, d: Daemon, env_file: Path) -> str:
    """The text of ``d``'s unit (no secret in it: they are in ``env_file``)."""
    after, wants = system_units(site, d)
    after += [unit_name(n) for n in d.after]
    wants += [unit_name(n) for n in d.after]
    lines = [
        f"# {unit_name(d.name)}: written by `workbench site units` from {site.home.site_file}",
        "# (the table of daemons, workbench/daemontable.py). Write it again after changing the",
        "# site file or the workbench; its tokens are in its EnvironmentFile, never here.",
        "[Unit]",
        f"Description=AI Factory Workbench: {d.description}",
        f"After={' '.join(after)}",
        f"Wants={' '.join(wants)}",
        "",
        "[Service]",
        "Type=simple",
    ]
    if d.root_because:
        lines += [*textwrap.wrap(f"root: {d.root_because}", 92, initial_indent="# ",
                                 subsequent_indent="# "), "User=root"]
    else:
        lines += ["# an unprivileged user of its own, made by systemd when it starts",
                  "DynamicUser=yes", f"User={d.user}"]
        if d.port is not None and d.port < 1024:
            lines.append("AmbientCapabilities=CAP_NET_BIND_SERVICE")
    lines.append("ExecStart=" + " ".join(_quote(w, True) for w in d.argv))
    if d.cwd is not None:
        lines.append(f"WorkingDirectory={_path(d.cwd)}")
    lines += [f"Environment={_quote(f'{k}={v}', False)}"
              for k, v in sorted(d.environment.items()) if not _holds_password(v)]
    lines += [
        f"EnvironmentFile={_path(env_file)}",
        f"StandardOutput=append:{_path(site.home.logfile(d.log_name))}",
        "StandardError=inherit",
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def write(site, output: Path, public_port: int = 8000) -> Written:
    """Write a unit for every daemon of ``site`` (a :class:`~workbench.hubconfig.Site` of a
    site file) into ``output``, and its environment file under :func:`env_dir`. Everything
    is checked and rendered before the first file is written; a :class:`UnitError` writes
    nothing."""
    daemons = table(site, public_port)
    for d in daemons:
        if not os.path.isabs(d.argv[0]) or not os.access(d.argv[0], os.X_OK):
            raise UnitError(f"{d.name}: {d.argv[0]} is not an installed program (for the "
                            "proxy: npm install -g configurable-http-proxy)")
    envs = env_dir(site)
    texts = {}
    for d in daemons:
        env_file = envs / f"{PREFIX}{d.name}.env"
        secret = "".join(_env_line(k, v) + "\n" for k, v in sorted(hidden_env(d).items()))
        texts[d.name] = (render(site, d, env_file), env_file, secret)
    output.mkdir(parents=True, exist_ok=True)
    envs.mkdir(parents=True, exist_ok=True)
    os.chmod(envs, 0o700)
    # where the units point: the hub's directory and the logs
    for d in daemons:
        if d.cwd is not None:
            d.cwd.mkdir(parents=True, exist_ok=True)
    site.home.log.mkdir(parents=True, exist_ok=True)
    units, env_files = [], []
    for d in daemons:
        text, env_file, secret = texts[d.name]
        atomicfile.write_text(env_file, f"# {unit_name(d.name)}'s tokens\n" + secret, mode=0o600)
        atomicfile.write_text(output / unit_name(d.name), text, mode=0o644)
        units.append(output / unit_name(d.name))
        env_files.append(env_file)
    return Written(units, env_files)
