"""The site file: every key checked on load, with file:line and what is wrong."""

from __future__ import annotations

import os

import pytest

from workbench import sitefile
from workbench.sitefile import SiteError


@pytest.fixture
def site(tmp_path):
    slurm_conf = tmp_path / "slurm.conf"
    slurm_conf.write_text("ClusterName=x\n")
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o600)

    def write(body: str):
        path = tmp_path / "site.yaml"
        path.write_text(body.format(slurm_conf=slurm_conf, secret=secret))
        return path
    return write


GOOD = """\
public_url: https://workbench.example.eu/
hub_ip: 10.0.0.5
slurm_conf: {slurm_conf}
auth:
  kind: oidc
  issuer: https://login.example.eu/
  client_id: aifactory-workbench
  client_secret_file: {secret}
  username_claim: preferred_username
  groups_claim: eduperson_entitlement
  groups:
    "urn:geant:example.eu:group:aifactory:support": support
    "urn:geant:example.eu:group:aifactory:managers": managers
  allow: project-members
database: postgresql+psycopg://workbench@db.example.eu/workbench
"""


def test_a_complete_oidc_site(site):
    s = sitefile.load(site(GOOD))
    assert (s.public_url, s.hub_ip) == ("https://workbench.example.eu/", "10.0.0.5")
    assert s.auth.kind == "oidc" and s.auth.client_secret == "s3cret"
    assert s.auth.groups_claim == "eduperson_entitlement"
    assert s.admins == ()  # nobody is an admin unless the file names them
    assert s.database.startswith("postgresql+psycopg://")
    assert s.auth.hub_groups(["urn:geant:example.eu:group:aifactory:support", "other"]) == [
        "support"]
    assert s.auth.hub_groups("urn:geant:example.eu:group:aifactory:managers") == ["managers"]
    assert s.auth.hub_groups(None) == []


def test_a_pam_site_with_named_admins(site):
    s = sitefile.load(site("slurm_conf: {slurm_conf}\nauth: {{kind: pam}}\n"
                           "admins: [hpcadmin]\n"))
    assert s.auth.kind == "pam" and s.admins == ("hpcadmin",) and s.database == ""
    assert s.public_url == "http://:8000"


@pytest.mark.parametrize("edit,line,message", [
    (lambda t: t.replace("hub_ip", "hubip"), 2, "unknown key 'hubip' in the site file"),
    (lambda t: t.replace("https://workbench", "workbench"), 1, "public_url must be a http"),
    (lambda t: t.replace("kind: oidc", "kind: saml"), 5, "auth kind must be one of pam, oidc"),
    (lambda t: t.replace("  issuer: https://login.example.eu/\n", ""), 5, "issuer is required"),
    (lambda t: t.replace("issuer: https://", "issuer: ftp://"), 6, "issuer must be a http"),
    (lambda t: t.replace(": managers\n", ": manager\n"), 13,
     "must become one of support, managers, reviewers, admins, not 'manager'"),
    (lambda t: t.replace("allow: project-members", "allow: all"), 14, "allow must be one of"),
    (lambda t: t.replace("postgresql+psycopg://", "mysql://"), 15,
     "database must be an SQLAlchemy URL"),
    (lambda t: t.replace("slurm_conf: ", "slurm_conf: /nonexistent"), 3, "is not a file"),
    (lambda t: t.replace("  username_claim", "  username_claims"), 9,
     "unknown key 'username_claims' in auth"),
    (lambda t: t.replace("hub_ip: 10.0.0.5\n", "hub_ip: 10.0.0.5\nhub_ip: 10.0.0.6\n"), 3,
     "'hub_ip' is written twice (first on line 2)"),
    (lambda t: t + "admins: admin\n", 16, "admins must be a list of user names"),
    (lambda t: t.split("auth:")[0], 1, "auth is required"),
])
def test_each_mistake_is_named_with_its_line(site, edit, line, message):
    path = site(edit(GOOD))
    with pytest.raises(SiteError) as e:
        sitefile.load(path)
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert message in str(e.value)


def test_the_client_secret_must_be_private_and_there(site, tmp_path):
    os.chmod(tmp_path / "oidc-secret", 0o644)
    with pytest.raises(SiteError, match=r"site.yaml:8: .*readable by others .*chmod 600"):
        sitefile.load(site(GOOD))
    (tmp_path / "oidc-secret").unlink()
    with pytest.raises(SiteError, match=r"site.yaml:8: client_secret_file: cannot read"):
        sitefile.load(site(GOOD))


def test_pam_refuses_what_only_a_token_can_say(site):
    with pytest.raises(SiteError, match=r":3: .*groups need a login token"):
        sitefile.load(site("auth:\n  kind: pam\n  groups: {{x: support}}\n"
                           "slurm_conf: {slurm_conf}\n"))
    with pytest.raises(SiteError, match=r":3: issuer is for auth kind oidc"):
        sitefile.load(site("slurm_conf: {slurm_conf}\nauth:\n  issuer: https://x/\n"
                           "  kind: pam\n"))


def test_garbage_is_refused_with_a_line(site, tmp_path):
    with pytest.raises(SiteError, match=r"site.yaml:2: not YAML"):
        sitefile.load(site("auth:\n  kind: [pam\n"))
    with pytest.raises(SiteError, match=r"site.yaml:1: expected a mapping"):
        sitefile.load(site("- just\n- a list\n"))
    with pytest.raises(SiteError, match="cannot read"):
        sitefile.load(tmp_path / "absent.yaml")
