"""``/hub/api/workbench/presets/{user}[/{name}]``: a user's saved presets of the spawn form.

- GET ``…/{user}``: the list, each with ``fits`` and ``why`` (decided now against the live
  cluster as the user sees it) and ``last_used`` (the one a server last started from);
  GET ``…/{user}/{name}``: one of them.
- PUT ``…/{user}/{name}`` ``{"options": {...}}``: create or replace, the options checked by
  the spawn request's own check; ``{"rename_to": "new name"}``: rename.
- DELETE ``…/{user}/{name}``.

Owner and admins only: every method needs the scope ``servers`` on the user (whoever may
start the user's servers may choose what they start with; support's ``read:servers`` is not
enough), checked by the hub's own ``has_scope``; anyone else gets a 403 that says so, whether
the user exists or not (where the hub's ``needs_scope`` answers 404). Refusals are HTTP
400/403/404/409 with a message, and change nothing.

The presets live in the hub's own database (:class:`workbench.presets.PresetStore` on the
hub's ``db_url``). The spawn form lists them (:func:`form_presets`) and a start from one marks
it last used (:func:`mark_used`). Register the handler with :func:`handlers`.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import has_scope
from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from workbench.presets import PresetError, PresetStore, check_name, check_options, why_not
from workbench.resources import ClusterView
from workbench.slurm import SlurmError
from workbench.webinput import json_body

ROUTE = r"/api/workbench/presets/(?P<user_name>[^/]+)/?(?P<preset_name>[^/]*)"


def handlers() -> list[tuple]:
    """The hub's extra handlers for presets (``c.JupyterHub.extra_handlers``)."""
    return [(ROUTE, PresetsHandler)]


def store_of(settings) -> PresetStore:
    """The presets in the hub's own database (``settings``: the hub's tornado settings)."""
    return PresetStore(settings["app"].db_url)


def listing(store: PresetStore, user: str, view: ClusterView,
            default_partition: str = "gpu") -> list[dict]:
    """``user``'s presets as the API and the form show them: fits/why now, last used."""
    presets = store.of_user(user)
    last = store.last_used(presets)
    return [p.to_json(why_not(p.options, view, default_partition),
                      last_used=last is not None and p.name == last.name) for p in presets]


def form_presets(spawner, view: ClusterView) -> list[dict]:
    """The presets the spawn form lists for ``spawner``'s user; [] (logged) when the hub's
    database cannot be read, so that the form still works without them."""
    try:
        return listing(store_of(spawner.user.settings), spawner.user.name, view,
                       spawner.default_partition)
    except SQLAlchemyError as e:
        spawner.log.warning("%s: presets not listed in the form: %s", spawner._log_name, e)
        return []


def mark_used(spawner, name: str) -> None:
    """Record that ``spawner``'s server starts from the preset ``name`` (the form's hidden
    field ``preset``); a failure is logged, it never stops the start."""
    try:
        if not store_of(spawner.user.settings).mark_used(spawner.user.name, name):
            spawner.log.info("%s: preset %r not found (deleted?), not marked used",
                             spawner._log_name, name)
    except SQLAlchemyError as e:
        spawner.log.warning("%s: preset %r not marked used: %s", spawner._log_name, name, e)


class PresetsHandler(APIHandler):
    @property
    def store(self) -> PresetStore:
        return store_of(self.settings)

    def _user(self, user_name: str):
        """The user whose presets these are, once the caller may reach them."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not has_scope(f"servers!user={user_name}", self.parsed_scopes, db=self.db):
            raise web.HTTPError(403, f"only {user_name} and the hub's admins may see or "
                                     f"change {user_name}'s presets")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name}")
        return user

    async def _view(self, user) -> tuple[ClusterView, str]:
        """The cluster as ``user`` sees it now (their spawner's view: the same partitions,
        accounts and budgets as their spawn form), and their default partition."""
        spawner = user.spawner
        try:
            return await spawner.cluster_view(), spawner.default_partition
        except SlurmError as e:
            self.log.warning("presets of %s: cluster view failed: %s", user.name, e)
            raise web.HTTPError(503, "The cluster is not answering, so presets cannot be "
                                     "checked now. Try again in a minute.") from e

    def _refuse(self, e: PresetError):
        raise web.HTTPError(e.status, e.message.replace("%", "%%")) from None

    async def get(self, user_name, preset_name=""):
        user = self._user(user_name)
        view, default_partition = await self._view(user)
        items = listing(self.store, user.name, view, default_partition)
        if not preset_name:
            self.finish(json.dumps({"user": user.name, "presets": items}))
            return
        found = [p for p in items if p["name"] == preset_name]
        if not found:
            raise web.HTTPError(404, f"{user.name} has no preset {preset_name!r}")
        self.finish(json.dumps(found[0]))

    async def put(self, user_name, preset_name=""):
        user = self._user(user_name)
        body = json_body(self)
        if not preset_name:
            raise web.HTTPError(400, "PUT names the preset: "
                                     "/hub/api/workbench/presets/{user}/{name}")
        if not isinstance(body, dict) or len(body) != 1 or \
                not {"options", "rename_to"} & set(body):
            raise web.HTTPError(400, 'the body must be {"options": {...the form\'s '
                                     'fields...}} or {"rename_to": "new name"}')
        view, default_partition = await self._view(user)
        try:
            if "rename_to" in body:
                preset = self.store.rename(user.name, preset_name, body["rename_to"])
                what = "renamed"
            else:
                options = check_options(body["options"], view, default_partition)
                preset = self.store.put(user.name, check_name(preset_name), options)
                what = "saved"
        except PresetError as e:
            self._refuse(e)
        self.log.info("preset %r of %s %s by %s", preset.name, user.name, what,
                      self.current_user.name)
        self.finish(json.dumps(preset.to_json(
            why_not(preset.options, view, default_partition),
            last_used=self._is_last_used(user.name, preset.name))))

    def _is_last_used(self, user: str, name: str) -> bool:
        last = self.store.last_used(self.store.of_user(user))
        return last is not None and last.name == name

    async def delete(self, user_name, preset_name=""):
        user = self._user(user_name)
        if not preset_name:
            raise web.HTTPError(400, "DELETE names the preset: "
                                     "/hub/api/workbench/presets/{user}/{name}")
        try:
            self.store.delete(user.name, preset_name)
        except PresetError as e:
            self._refuse(e)
        self.log.info("preset %r of %s deleted by %s", preset_name, user.name,
                      self.current_user.name)
        self.set_status(204)
        self.finish()
