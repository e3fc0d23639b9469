"""The hub service recipe (workbench.services): one registry gives the hub its services,
their roles and who may access them, and `workbench up` their processes' environment."""

import json

from traitlets.config import Config

from workbench import hubconfig, services
from workbench.demo.people import People, Person
from workbench.paths import FactoryHome


def site(tmp_path, hub_ip="10.0.0.5"):
    return hubconfig.Site(home=FactoryHome(tmp_path), slurm_conf="/site/slurm.conf",
                          hub_ip=hub_ip,
                          people=People((Person("alice"), Person("sam", hub_groups=("support",)),
                                         Person("maria", hub_groups=("managers",)))))


def test_every_service_gets_a_role_with_its_own_scopes_and_a_root_only_token(tmp_path):
    s = site(tmp_path)
    c = Config()
    hubconfig.configure(c, s)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    names = [svc.name for svc in services.registry(s)]
    assert len(names) == len(set(names))
    for svc in services.registry(s):
        entry = next(e for e in c.JupyterHub.services if e["name"] == svc.name)
        assert entry["api_token"] == s.service_token(svc.name)
        assert "command" not in entry  # runs beside the hub, not as its child
        token_file = tmp_path / "secrets" / f"service-{svc.name}-token"
        assert token_file.stat().st_mode & 0o077 == 0
        if svc.scopes:
            assert roles[svc.name]["services"] == [svc.name]
            assert roles[svc.name]["scopes"] == list(svc.scopes)
        if svc.port:
            # routed by the proxy at the hub's address (no localhost for a site)
            assert entry["url"] == f"http://10.0.0.5:{svc.port}"
            assert entry["oauth_no_confirm"] is True


def test_access_is_granted_by_role_to_users_or_groups(tmp_path):
    s = site(tmp_path)
    c = Config()
    hubconfig.configure(c, s)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    for svc in services.registry(s):
        if not svc.port:
            continue
        if services.EVERY_USER in svc.access:
            assert svc.access_scope in roles["user"]["scopes"]
            assert "self" in roles["user"]["scopes"]
        groups = [g for g in svc.access if g not in (services.EVERY_USER, services.METRICS_ROLE)]
        if groups:
            assert roles[f"access-{svc.name}"] == {
                "name": f"access-{svc.name}", "description": f"May use the {svc.name} service",
                "scopes": [svc.access_scope], "groups": groups}
    # No person's role reaches others' servers. JupyterHub's `shares` implies access:servers
    # (a share may only be granted by whoever could use it): only the help service holds it,
    # with its token in a root-only file.
    reaching = {r["name"] for r in roles.values() for sc in r.get("scopes", ())
                if sc.split("!")[0] in ("access:servers", "shares", "admin:servers")
                and "!server" not in sc and "!user" not in sc}
    assert reaching <= {"help"}
    assert not any(r.get("groups") or r.get("users") for r in roles.values()
                   if r["name"] in reaching)


def test_a_web_service_process_gets_what_hub_oauth_needs(tmp_path):
    s = site(tmp_path)
    web = services.HubService("demo", ("true",), "a demo", port=8099, access=("support",))
    env = services.process_env(web, s, {"PATH": "/usr/bin"})
    assert env["JUPYTERHUB_SERVICE_URL"] == "http://10.0.0.5:8099"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/services/demo/"
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-demo"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/services/demo/oauth_callback"
    assert json.loads(env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"]) == ["access:services!service=demo"]
    assert env["JUPYTERHUB_API_URL"] == "http://10.0.0.5:8081/hub/api"
    assert env["JUPYTERHUB_API_TOKEN"] == s.service_token("demo")
    assert env["PATH"] == "/usr/bin"
    api_only = services.HubService("cron", ("true",), "no URL")
    assert "JUPYTERHUB_SERVICE_URL" not in services.process_env(api_only, s, {})


def test_sessions_reach_user_services_at_the_hub_address_with_their_token(tmp_path):
    s = site(tmp_path)
    c = Config()
    hubconfig.configure(c, s)
    urls = c.SlurmGPUSpawner.user_services
    for svc in services.registry(s):
        if svc.port and services.EVERY_USER in svc.access:
            assert urls[svc.name] == f"http://10.0.0.5:{svc.port}/services/{svc.name}/"
        else:
            assert svc.name not in urls


def test_a_session_token_may_call_the_user_services_and_nothing_more():
    from spawners.slurm_gpu import SlurmGPUSpawner

    urls = {"catalogue": "http://10.0.0.5:8091/services/catalogue/"}
    scopes = SlurmGPUSpawner(user_services=urls).server_token_scopes
    assert "access:services!service=catalogue" in scopes
    assert not [s for s in scopes if s.startswith("access:services") and "catalogue" not in s]
    assert "access:servers!server" in scopes and "access:servers" not in scopes
    assert SlurmGPUSpawner().server_token_scopes == [
        "access:servers!server", "users:activity!user", "read:servers!server", "servers!server"]
