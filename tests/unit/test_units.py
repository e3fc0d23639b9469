"""A site's systemd units (``workbench site units``, workbench/units.py), as an operator would
check them: a unit for every daemon of the one table (workbench/daemontable.py) running what
``workbench up`` runs, no token in any unit's text, root-only environment files, the order
they start in, nothing written from a bad site file, and ``systemd-analyze verify`` silent on
each. The site file is one like the site-demo's (workbench/demo/sitedemo.py)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench import daemons, daemontable, sitefile, units
from workbench.cli import main
from workbench.demo.hub import LocalHub
from workbench.demo.sitedemo import SiteDemo
from workbench.hubconfig import Site
from workbench.paths import FactoryHome


def site_home(tmp_path: Path, monkeypatch, body: str | None = None) -> FactoryHome:
    """A home whose site file is the site-demo's (OIDC, PostgreSQL on 127.0.0.1), or
    ``body``."""
    home = FactoryHome(tmp_path / "home")
    home.etc.mkdir(parents=True)
    home.slurm_conf.write_text("ClusterName=site\n")
    demo = SiteDemo(home=home)
    demo.client_secret_file.parent.mkdir(parents=True)
    demo.client_secret_file.write_text("client-secret\n")
    os.chmod(demo.client_secret_file, 0o600)
    home.site_file.write_text(body if body is not None else demo.site_file())
    monkeypatch.setenv("AIFACTORY_HOME", str(home.root))
    return home


def load_site(home: FactoryHome) -> Site:
    return Site.from_file(sitefile.load(home.site_file), home)


def settings(text: str) -> dict[str, list[str]]:
    """A unit's settings: key -> its values, in order (comments left out)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture
def written(tmp_path, monkeypatch):
    home = site_home(tmp_path, monkeypatch)
    site = load_site(home)
    return site, units.write(site, tmp_path / "units")


def test_every_daemon_has_a_unit_that_runs_what_the_demo_runs(written, monkeypatch):
    site, out = written
    table = daemontable.table(site)
    assert [p.name for p in out.units] == [f"aifactory-{d.name}.service" for d in table]
    assert {d.name for d in table} >= {"proxy", "hub", *(s.name for s in site.services())}
    spawned = {}
    monkeypatch.setattr(daemons, "spawn", lambda argv, log, pid, env, cwd: spawned.update(
        {pid.name: (argv, env, cwd)}))
    LocalHub(site).start_services()  # the demo's runner, from the same table
    for d in table:
        unit = settings((out.units[0].parent / units.unit_name(d.name)).read_text())
        assert shlex.split(unit["ExecStart"][0]) == list(d.argv)
        env = dict(shlex.split(e)[0].split("=", 1) for e in unit["Environment"])
        assert env == d.environment
        assert unit["Restart"] == ["on-failure"]
        if d.name in (s.name for s in site.services()):
            argv, run_env, cwd = spawned[f"{d.name}.pid"]
            assert argv == list(d.argv) and cwd == d.cwd
            # the same environment and tokens; only the search path after the workbench's
            # own commands is the caller's in the demo, the system's in a unit
            path = run_env.pop("PATH")
            assert path.startswith(d.environment["PATH"].split(":")[0] + ":")
            assert run_env.items() >= {**d.environment, **d.secrets()}.items() - {
                ("PATH", d.environment["PATH"])}
            assert unit["WorkingDirectory"] == [str(d.cwd)]


def test_no_token_in_any_unit_and_the_env_files_are_root_only(written):
    site, out = written
    tokens = [p.read_text().strip() for p in site.home.secrets.iterdir()]
    assert len(tokens) >= len(out.units)  # the proxy's and each service's, the client's
    for unit, env_file in zip(out.units, out.env_files, strict=True):
        text = unit.read_text()
        assert not [t for t in tokens if t in text], unit.name
        assert settings(text)["EnvironmentFile"] == [str(env_file)]
        st = env_file.stat()
        assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid()
        assert env_file.parent.stat().st_mode & 0o077 == 0
    hub_env = (site.home.etc / "units" / "aifactory-hub.env").read_text()
    assert f'CONFIGPROXY_AUTH_TOKEN="{site.proxy_token}"' in hub_env
    help_env = (site.home.etc / "units" / "aifactory-help.env").read_text()
    assert f'JUPYTERHUB_API_TOKEN="{site.service_token("help")}"' in help_env


def test_the_order_they_start_in(written):
    site, out = written
    by_name = {p.name: settings(p.read_text()) for p in out.units}
    proxy, hub = by_name.pop("aifactory-proxy.service"), by_name.pop("aifactory-hub.service")
    assert "slurmctld.service" not in proxy["After"][0]  # the proxy needs no cluster
    after, wants = hub["After"][0].split(), hub["Wants"][0].split()
    assert {"munge.service", "slurmctld.service", "postgresql.service",
            "aifactory-proxy.service"} <= set(after)
    # munge, the proxy and a PostgreSQL on this machine are pulled in; never the controller
    assert {"munge.service", "postgresql.service", "aifactory-proxy.service"} <= set(wants)
    assert "slurmctld.service" not in wants
    assert by_name
    for unit in by_name.values():  # every hub service
        assert {"aifactory-hub.service", "munge.service", "slurmctld.service",
                "postgresql.service"} <= set(unit["After"][0].split())
        assert "aifactory-hub.service" in unit["Wants"][0].split()


def test_users_root_only_where_it_must_be_and_why(written):
    site, out = written
    for d in daemontable.table(site):
        text = (out.units[0].parent / units.unit_name(d.name)).read_text()
        if d.root_because:
            assert "User=root" in text and "\n# root: " in text
        else:
            assert "DynamicUser=yes" in text and f"User=aifactory-{d.name}" in text
    # a new hub service runs unprivileged unless it says why it needs root: decide it here
    unprivileged = [d.name for d in daemontable.table(site) if not d.root_because]
    assert unprivileged == ["proxy", "idle-culler"], (
        "a service without root_because runs as a DynamicUser: nothing writable, secrets/ "
        "and hub/ unreadable; give it root_because (workbench/services.py) if it needs them")


def test_a_site_without_postgresql_is_not_ordered_after_it(tmp_path, monkeypatch):
    home = site_home(tmp_path, monkeypatch, "auth: {kind: pam}\n"
                     f"slurm_conf: {tmp_path / 'home/etc/slurm.conf'}\n")
    out = units.write(load_site(home), tmp_path / "units")
    assert not [p for p in out.units if "postgresql.service" in p.read_text()]


def test_a_database_password_stays_out_of_the_units(tmp_path, monkeypatch):
    url = "postgresql+psycopg://workbench:s3cret@db.example.eu/workbench"
    home = site_home(tmp_path, monkeypatch, "auth: {kind: pam}\n"
                     f"slurm_conf: {tmp_path / 'home/etc/slurm.conf'}\ndatabase: {url}\n")
    out = units.write(load_site(home), tmp_path / "units")
    for unit, env_file in zip(out.units, out.env_files, strict=True):
        assert "s3cret" not in unit.read_text()
        assert f'WORKBENCH_DATABASE_URL="{url}"' in env_file.read_text()
        # a database on another machine: ordered after a local one, none pulled in
        assert "Wants=" in unit.read_text() and "postgresql" not in settings(
            unit.read_text())["Wants"][0]


def test_units_already_there_are_replaced_whole(written):
    site, out = written
    for unit in out.units:
        unit.write_text("stale\n")
    again = units.write(site, out.units[0].parent)
    assert all(u.read_text().startswith("# aifactory-") for u in again.units)
    assert sorted(p.name for p in out.units[0].parent.iterdir()) == sorted(
        p.name for p in again.units)  # no temporary file left


def test_a_bad_site_file_writes_nothing(tmp_path, monkeypatch, capsys):
    home = site_home(tmp_path, monkeypatch, "auth: {kind: pam}\nhub_ipp: 10.0.0.5\n")
    output = tmp_path / "units"
    assert main(["site", "units", "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert f"{home.site_file}:2: unknown key 'hub_ipp'" in err and "Nothing was written" in err
    assert not output.exists() and not (home.etc / "units").exists()
    assert [p.name for p in home.secrets.iterdir()] == ["oidc-client-secret"]  # no token


def test_the_command_writes_the_units_and_says_how_to_enable_them(tmp_path, monkeypatch,
                                                                    capsys):
    site_home(tmp_path, monkeypatch)
    output = tmp_path / "units"
    assert main(["site", "units", "--output", str(output)]) == 0
    said = capsys.readouterr().out
    assert "systemctl enable --now aifactory-proxy.service aifactory-hub.service" in said
    assert (output / "aifactory-hub.service").exists()


def verify(unit: Path) -> subprocess.CompletedProcess:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: ./bootstrap.sh installs it (Debian's systemd)"
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          cwd=unit.parent, timeout=60)


def test_systemd_analyze_verify_passes_on_every_unit(written):
    _, out = written
    for unit in out.units:
        proc = verify(unit)
        # silent: it warns (and still exits 0) about unknown keys, bad paths and users
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), unit.name


def test_systemd_analyze_verify_would_say_what_is_wrong(written, tmp_path):
    """The check above can fail: a bad key, a relative path and a user that is no user name
    are each reported."""
    _, out = written
    text = out.units[0].read_text()
    for wrong in ("Restart=on-failure\nRestartt=always", "EnvironmentFile=relative.env",
                  "User=no such user!"):
        bad = tmp_path / "aifactory-bad.service"
        bad.write_text(text.replace("Restart=on-failure", wrong))
        proc = verify(bad)
        assert proc.stdout + proc.stderr, wrong
