"""The site profile: a site file makes the hub's login, database and admins its own; without
one the demo profile applies as before. Who may log in is decided at each login."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub import orm
from sqlalchemy import text
from tornado import web
from traitlets.config import Config

from tests.unit.test_sitefile import GOOD
from workbench import access, hubconfig
from workbench.allocations import AllocationError
from workbench.allocations.loader import load
from workbench.paths import FactoryHome

SUPPORT = "urn:geant:example.eu:group:aifactory:support"


@pytest.fixture
def site_home(tmp_path, monkeypatch):
    """AIFACTORY_HOME with the site file of tests/unit/test_sitefile.py (OIDC, PostgreSQL)."""
    (tmp_path / "etc").mkdir()
    slurm_conf = tmp_path / "etc" / "slurm.conf"
    slurm_conf.write_text("ClusterName=x\n")
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o600)
    (tmp_path / "etc" / "site.yaml").write_text(GOOD.format(slurm_conf=slurm_conf,
                                                            secret=secret))
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))
    return tmp_path


def test_a_site_file_makes_the_login_the_database_and_the_admins_the_sites(site_home):
    site = hubconfig.Site.from_env()
    assert site.profile == "site" and site.people is None  # no demo people at a site
    c = Config()
    hubconfig.configure(c, site)
    assert c.JupyterHub.authenticator_class == "workbench-oidc"
    assert c.Authenticator.admin_users == set()  # a user called admin is nobody special
    assert c.Authenticator.allow_existing_users is False
    assert c.Authenticator.auth_refresh_strict is True
    assert "load_groups" not in c.JupyterHub  # groups follow the login token
    o = c.WorkbenchOIDCAuthenticator
    assert (o.issuer, o.client_id, o.client_secret) == (
        "https://login.example.eu/", "aifactory-workbench", "s3cret")
    assert o.oauth_callback_url == "https://workbench.example.eu/hub/oauth_callback"
    assert o.manage_groups is True and o.admin_groups == {"admins"}
    assert o.allow_all is False  # else JupyterHub never asks check_allowed
    assert "eduperson_entitlement" in o.scope
    assert c.JupyterHub.db_url == "postgresql+psycopg://workbench@db.example.eu/workbench"
    assert "db_kwargs" not in c.JupyterHub  # SQLite's settings are SQLite's only
    assert c.SlurmGPUSpawner.audit_db == c.JupyterHub.db_url  # one database for all
    assert c.SlurmGPUSpawner.slurm_conf == str(site_home / "etc" / "slurm.conf")
    assert c.JupyterHub.hub_ip == "10.0.0.5"


def test_without_a_site_file_the_demo_profile_applies(tmp_path, monkeypatch):
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))
    site = hubconfig.Site.from_env()
    assert site.profile == "demo" and "alice" in site.people.names
    c = Config()
    hubconfig.configure(c, site)
    assert c.JupyterHub.authenticator_class == "workbench-demo"
    assert c.Authenticator.admin_users == {"admin"}
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path}/hub/jupyterhub.sqlite"


def test_the_hubs_own_sqlite_file_commits_without_waiting_for_the_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("AIFACTORY_HOME", str(tmp_path))
    c = Config()
    hubconfig.configure(c, hubconfig.Site.from_env())
    (tmp_path / "hub").mkdir(exist_ok=True)
    session = orm.new_session_factory(c.JupyterHub.db_url, **c.JupyterHub.db_kwargs)()
    pragma = {name: session.execute(text(f"PRAGMA {name}")).scalar()
              for name in ("journal_mode", "synchronous", "foreign_keys")}
    # WAL, no fsync per commit (synchronous=NORMAL is 1), JupyterHub's own pragma kept
    assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1}
    session.add(orm.User(name="alice"))
    session.commit()
    again = orm.new_session_factory(c.JupyterHub.db_url, **c.JupyterHub.db_kwargs)()
    assert [u.name for u in again.query(orm.User)] == ["alice"]


def test_a_wrong_site_file_stops_the_hub_with_its_line(site_home):
    path = site_home / "etc" / "site.yaml"
    path.write_text(path.read_text().replace("kind: oidc", "kind: ldap"))
    with pytest.raises(ValueError, match=r"site.yaml:5: auth kind must be one of"):
        hubconfig.Site.from_env()


def test_the_oidc_groups_claim_becomes_hub_groups(site_home):
    from spawners.login import WorkbenchOIDCAuthenticator
    c = Config()
    hubconfig.configure(c, hubconfig.Site.from_env())
    auth = WorkbenchOIDCAuthenticator(config=c)
    state = {"oauth_user": {"eduperson_entitlement": [SUPPORT, "urn:other"]}}
    assert auth.hub_groups_of(state) == ["support"]
    assert auth.hub_groups_of({"oauth_user": {"eduperson_entitlement": SUPPORT}}) == [
        "support"]
    assert auth.hub_groups_of({"oauth_user": {}}) == []


ALLOCS = """\
period: {start: 2026-01-01, end: 2026-12-31}
programmes:
  startups:
    projects:
      startup-helios: {members: [alice], gpu_hours: 10}
"""


@pytest.fixture
def allocations(tmp_path):
    path = tmp_path / "allocations.yaml"
    path.write_text(ALLOCS)
    return lambda: load(path, check_users=False)


def test_who_may_log_in(allocations):
    accounts = {"alice", "sam", "nora"}.__contains__
    assert access.login_refusal("alice", [], "project-members", allocations, accounts) is None
    assert access.login_refusal("sam", ["support"], "project-members", allocations,
                                accounts) is None  # staff, in no project
    why = access.login_refusal("nora", [], "project-members", allocations, accounts)
    assert "not a member of any project" in why
    assert access.login_refusal("nora", [], "everyone", allocations, accounts) is None
    why = access.login_refusal("ghost", ["support"], "everyone", allocations, accounts)
    assert "no account 'ghost' on the cluster" in why  # never a hub user without Unix


def test_an_unusable_allocations_file_refuses_members_but_not_staff():
    def broken():
        raise AllocationError("allocations.yaml:3: bad")
    accounts = {"alice", "sam"}.__contains__
    why = access.login_refusal("alice", [], "project-members", broken, accounts)
    assert "allocations.yaml:3: bad" in why
    assert access.login_refusal("sam", ["managers"], "project-members", broken,
                                accounts) is None


def test_a_refused_login_is_a_403_with_the_reason_and_a_removed_person_is_refreshed_out(
        site_home, monkeypatch):
    from spawners import login
    monkeypatch.setattr(login, "cached", lambda: (_ for _ in ()).throw(
        AllocationError("no allocations here")))
    c = Config()
    hubconfig.configure(c, hubconfig.Site.from_env())
    auth = login.WorkbenchOIDCAuthenticator(config=c)
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(auth.check_allowed("nobody-has-this-name", {"groups": []}))
    assert e.value.status_code == 403 and "no account" in e.value.log_message
    me = getpass.getuser()  # a real Unix user, staff by its token's groups
    assert asyncio.run(auth.check_allowed(me, {"groups": ["support"]})) is True
    gone = SimpleNamespace(name="nobody-has-this-name", groups=[])
    assert asyncio.run(auth.refresh_user(gone)) is False


def test_the_demo_refreshes_out_a_person_taken_out_of_the_people_file():
    from spawners.login import WorkbenchDemoAuthenticator
    auth = WorkbenchDemoAuthenticator(allowed_users={"alice"})
    assert asyncio.run(auth.refresh_user(SimpleNamespace(name="mallory"))) is False
    assert asyncio.run(auth.refresh_user(SimpleNamespace(name="alice"))) is True


def test_a_site_never_imports_the_demo(site_home):
    """The hub's whole configuration for a site, its spawner, services and logins, loaded in
    a fresh interpreter: no module of workbench.demo (people, local cluster, local hub)."""
    code = """
import sys
from traitlets.config import Config
from workbench import hubconfig
import spawners.slurm_gpu, spawners.login, workbench.services, workbench.reconcile
import workbench.cli.site
hubconfig.configure(Config(), hubconfig.Site.from_env())
demo = sorted(m for m in sys.modules if m.startswith("workbench.demo"))
assert not demo, demo
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "AIFACTORY_HOME": str(site_home)})
    assert proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_home_knows_its_site_file(tmp_path):
    assert FactoryHome(tmp_path).site_file == tmp_path / "etc" / "site.yaml"


def test_the_site_demo_writes_a_site_file_that_loads_and_marks_itself(tmp_path):
    from workbench import sitefile
    from workbench.demo.people import People, Person
    from workbench.demo.sitedemo import ENTITLEMENTS, STRANGER, SiteDemo, is_site_demo
    home = FactoryHome(tmp_path)
    home.etc.mkdir(parents=True)
    home.slurm_conf.write_text("ClusterName=x\n")
    demo = SiteDemo(home=home)
    demo.client_secret_file.parent.mkdir(parents=True)
    demo.client_secret_file.write_text("s\n")
    os.chmod(demo.client_secret_file, 0o600)
    home.site_file.write_text(demo.site_file())
    assert is_site_demo(home.site_file)
    s = sitefile.load(home.site_file)
    assert s.auth.kind == "oidc" and s.admins == () and s.database.startswith("postgresql")
    assert s.auth.hub_groups([ENTITLEMENTS["support"]]) == ["support"]
    people = People((Person("sam", hub_groups=("support",)), Person("admin", hub_admin=True)))
    accounts = demo.accounts(people, "pw")
    assert accounts["sam"]["claims"]["eduperson_entitlement"] == [ENTITLEMENTS["support"]]
    assert accounts["admin"]["claims"]["eduperson_entitlement"] == []  # no admin by a name
    assert STRANGER in accounts
    operators = tmp_path / "operator.yaml"
    operators.write_text("# our site\n" + demo.site_file().split("\n", 2)[2])
    assert not is_site_demo(operators)  # an operator's file is never taken for the demo's


def test_a_site_never_reads_the_demos_allocations_or_catalogue(tmp_path):
    from workbench.allocations import AllocationError
    from workbench.allocations.loader import default_path
    from workbench.paths import data_file
    home = FactoryHome(tmp_path)
    assert default_path(home) == data_file("cluster", "allocations.yaml")  # the demo
    home.etc.mkdir(parents=True)
    home.site_file.write_text("auth: {kind: pam}\n")
    assert default_path(home) == home.etc / "allocations.yaml"  # a site: its own, or none
    with pytest.raises(AllocationError, match=r"etc/allocations.yaml: cannot read"):
        load(default_path(home), check_users=False)
    assert home.config_file("catalogue.yaml") == home.etc / "catalogue.yaml"


def test_the_site_demo_keeps_copies_of_the_demos_files_and_takes_back_only_its_own(tmp_path):
    from workbench.demo.sitedemo import SITE_COPIES, SiteDemo, is_site_demo
    home = FactoryHome(tmp_path)
    home.etc.mkdir(parents=True)
    demo = SiteDemo(home=home)
    ours = home.etc / "catalogue.yaml"
    theirs = home.etc / "allocations.yaml"
    theirs.write_text("# an operator's own\nprogrammes: {}\n")
    demo.write_copies()
    assert is_site_demo(ours) and "Common European Data Space" in ours.read_text()
    assert theirs.read_text().startswith("# an operator's own")  # kept as it was
    home.site_file.write_text(demo.site_file())
    assert demo.remove_files() == [home.site_file, ours]
    assert theirs.exists() and not ours.exists()
    assert set(SITE_COPIES) == {"allocations.yaml", "catalogue.yaml"}


def test_the_demo_people_are_valid_unix_users_and_a_bad_comment_is_refused(tmp_path):
    from workbench.demo.people import People

    names = People.load().names  # the shipped file: useradd takes every description
    assert {"carla", "rita", "maria", "alice"} <= set(names)
    bad = tmp_path / "demo-users.yaml"
    bad.write_text('users:\n  carla: {description: "Founder: no project yet"}\n')
    with pytest.raises(ValueError, match=r"users\.carla\.description: no ':'"):
        People.load(bad)
