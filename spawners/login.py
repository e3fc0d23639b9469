"""A site's logins: OpenID Connect (oauthenticator's ``GenericOAuthenticator``) or PAM, with
who may log in decided afresh at every login (:func:`workbench.access.login_refusal`).

- The login's username (OIDC: ``username_claim``) names the Unix user the jobs run as.
- Its hub groups follow the login at every login: OIDC from the groups claim through the site
  file's ``groups`` mapping, PAM from the Unix groups named ``support``, ``managers``,
  ``admins``. The ``admins`` group makes a hub admin; so do the site file's ``admins``.
- A refused login gets a page saying why (403), and no hub user is created.

:func:`configure` fills the hub's ``Config`` from a :class:`workbench.hubconfig.Site`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import urllib.request
from functools import cached_property

from jupyterhub.auth import Authenticator, PAMAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Unicode, default

from workbench import access
from workbench.allocations.loader import cached
from workbench.sitefile import HUB_GROUPS

DISCOVERY_TIMEOUT_S = 10


class _Admission(Authenticator):
    """The site's rule, shared by both logins: checked at each login (``check_allowed``)
    and again every ``auth_refresh_age`` on every request (``refresh_user``; with
    ``auth_refresh_strict`` a refused person's API tokens stop working too)."""

    allow = Unicode("project-members", config=True,
                    help="Who may log in: 'project-members' (members of a project in the "
                    "allocations file, and staff) or 'everyone' (every user with a Unix "
                    "account). Example: 'project-members'.")

    def refuse_unless_admitted(self, username: str, groups) -> None:
        reason = access.login_refusal(username, groups, self.allow, cached)
        if reason:
            self.log.warning("login of %s refused: %s", username, reason)
            raise web.HTTPError(403, reason)

    async def refresh_user(self, user, handler=None, **kwargs):
        groups = [g.name for g in user.groups]
        reason = access.login_refusal(user.name, groups, self.allow, cached)
        if reason:
            self.log.warning("%s is no longer let in: %s", user.name, reason)
            return False
        return await super().refresh_user(user, handler, **kwargs)


class WorkbenchOIDCAuthenticator(_Admission, GenericOAuthenticator):
    """OpenID Connect login; endpoints from the issuer's discovery document, read at the
    first login (the hub starts while the provider is away)."""

    issuer = Unicode(config=True,
                     help="The OpenID provider's issuer URL; its "
                     "/.well-known/openid-configuration gives the endpoints. "
                     "Example: 'https://login.example.eu/'.")
    group_map = Unicode("{}", config=True,
                        help="JSON object: value of the groups claim -> hub group (support, "
                        "managers, reviewers, admins). Example: "
                        "'{\"urn:geant:example.eu:group:aifactory:support\": \"support\"}'.")
    groups_claim = Unicode("groups", config=True,
                           help="The userinfo claim listing the login's groups "
                           "(entitlements). Example: 'eduperson_entitlement'.")

    @cached_property
    def _discovery(self) -> dict:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=DISCOVERY_TIMEOUT_S) as r:
                return json.load(r)
        except (OSError, ValueError) as e:
            raise web.HTTPError(503, f"the login provider at {self.issuer} does not answer "
                                f"({e}); try again in a minute") from e

    @default("authorize_url")
    def _authorize_url(self):
        return self._discovery["authorization_endpoint"]

    @default("token_url")
    def _token_url(self):
        return self._discovery["token_endpoint"]

    @default("userdata_url")
    def _userdata_url(self):
        return self._discovery["userinfo_endpoint"]

    @default("auth_state_groups_key")
    def _groups_key(self):
        return self.hub_groups_of

    def hub_groups_of(self, auth_state: dict) -> list[str]:
        mapping = json.loads(self.group_map)
        claimed = (auth_state.get("oauth_user") or {}).get(self.groups_claim) or []
        claimed = [claimed] if isinstance(claimed, str) else claimed
        return sorted({mapping[v] for v in claimed if v in mapping})

    async def check_allowed(self, username, auth_model):
        if auth_model is None:  # JupyterHub's own call without a login: nothing to decide
            return True
        self.refuse_unless_admitted(username, auth_model.get("groups") or ())
        return True


class WorkbenchDemoAuthenticator(PAMAuthenticator):
    """The demo's PAM login for the people of its people file (``allowed_users``): a person
    taken out of the file is refused at the next login and, within ``auth_refresh_age``, on
    every request with an old token."""

    async def refresh_user(self, user, handler=None, **kwargs):
        if self.allowed_users and user.name not in self.allowed_users:
            self.log.warning("%s is no longer in the people file", user.name)
            return False
        return await super().refresh_user(user, handler, **kwargs)


class WorkbenchPAMAuthenticator(_Admission, PAMAuthenticator):
    """PAM login at a site; hub groups from the Unix groups named like them."""

    @default("manage_groups")
    def _manage_groups(self):
        return True

    async def authenticate(self, handler, data):
        name = await super().authenticate(handler, data)
        if not name:
            return None
        name = name if isinstance(name, str) else name["name"]
        groups = unix_hub_groups(name)
        # admin follows the login too: out of the admins group, no longer an admin
        return {"name": name, "groups": groups,
                "admin": name in self.admin_users or "admins" in groups}

    def check_allowed(self, username, authentication=None):
        groups = (authentication or {}).get("groups") or ()
        self.refuse_unless_admitted(username, groups)
        return True


def unix_hub_groups(user: str) -> list[str]:
    """The hub groups (support, managers, reviewers, admins) among ``user``'s Unix
    groups."""
    try:
        gid = pwd.getpwnam(user).pw_gid
    except KeyError:
        return []
    names = {grp.getgrgid(g).gr_name for g in os.getgrouplist(user, gid)}
    return sorted(names & set(HUB_GROUPS))


def configure(c, site) -> None:
    """The hub's login for a site file's ``auth`` (``site.profile == "site"``)."""
    auth = site.auth
    c.Authenticator.admin_users = set(site.admins)
    if auth.kind == "pam":
        c.JupyterHub.authenticator_class = "workbench-pam"
        c.WorkbenchPAMAuthenticator.allow = auth.allow
        return
    c.JupyterHub.authenticator_class = "workbench-oidc"
    o = c.WorkbenchOIDCAuthenticator
    o.issuer = auth.issuer
    o.client_id = auth.client_id
    o.client_secret = auth.client_secret
    o.oauth_callback_url = site.bind_url.rstrip("/") + "/hub/oauth_callback"
    o.login_service = "your institution"
    o.scope = list(dict.fromkeys(["openid", "profile", auth.groups_claim]))
    o.username_claim = auth.username_claim
    o.groups_claim = auth.groups_claim
    o.group_map = json.dumps(auth.groups)
    o.manage_groups = True
    o.admin_groups = {"admins"}
    o.allow = auth.allow
    # who may log in is check_allowed's decision (allow_all would skip it)
    o.allow_all = False
