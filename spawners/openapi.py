"""``GET /hub/api/workbench/openapi.json``: the hub's own workbench APIs as an OpenAPI 3
document (presets, past sessions, walltime, the port callback: :mod:`spawners.presets`,
:mod:`spawners.sessions`, :mod:`spawners.walltime`, :mod:`spawners.api`), paths relative to
``/hub``. Any logged-in user or token may read
it. ``tests/unit/test_fuzz_hub.py`` checks that every route the hub's configuration
registers (``workbench.hubconfig.update_spawner``) is in it.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler
from tornado import web

from workbench.openapi import openapi
from workbench.presets import MAX_NAME

ROUTE = r"/api/workbench/openapi.json"

_USER = {"name": "user", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "a hub user's name, e.g. alice"}
_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
         "description": "a preset's name (no '/', no control characters)"}
_SERVER = {"name": "server", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "a named server of the user (the default server: leave it out)"}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}

#: the spawn options contract (README: "the spawn options contract"), every field optional
#: (:data:`workbench.resources.FIELDS`; a test keeps them the same)
SPAWN_OPTIONS = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "partition": {"type": "string", "description": "an existing partition"},
        "account": {"type": "string", "description": "one of the user's Slurm accounts"},
        "gpus": {"type": "integer", "minimum": 0},
        "gpu_type": {"type": "string", "description": "a GPU type of that partition"},
        "cpus": {"type": "integer", "minimum": 1},
        "memory": {"type": "string", "pattern": "^[1-9][0-9]{0,8}[KMGTkmgt]?$",
                   "description": "16G, 512M"},
        "runtime": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 1}],
                    "description": "HH:MM:SS, D-HH:MM:SS or whole minutes"},
    },
}

_PRESET = {"type": "object", "required": ["name", "options", "fits", "why", "last_used"],
           "properties": {"name": {"type": "string"}, "options": SPAWN_OPTIONS,
                          "fits": {"type": "boolean"}, "why": {"type": "string", "nullable": True},
                          "last_used": {"type": "boolean"},
                          "created_at": {"type": "string"}, "updated_at": {"type": "string"},
                          "last_used_at": {"type": "string", "nullable": True}}}


def _ok(description: str, schema: dict | None = None, code: str = "200") -> dict:
    content = {"application/json": {"schema": schema}} if schema else _OBJECT
    return {code: {"description": description, "content": content}}


def _walltime(params: list[dict]) -> dict:
    return {
        "get": {"summary": "the running session's job, time limit, end, seconds left and "
                           "its figures so far (scope read:servers)",
                "parameters": params, "responses": _ok("job_id, time_limit_min, end, "
                                                       "remaining_s, usage, ...")},
        "post": {"summary": "extend the session's time limit by N minutes (scope servers), "
                            "within the partition's MaxTime and the project's GPU-hours",
                 "parameters": params,
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"type": "object", "required": ["minutes"],
                                "additionalProperties": False,
                                "properties": {"minutes": {"type": "integer",
                                                           "minimum": 1}}}}}},
                 "responses": _ok("the new time limit")}}


DOCUMENT = openapi(
    "workbench (hub)", "The hub's own workbench APIs: presets of the spawn form, past "
    "sessions, walltime", {
        "/api/workbench/presets/{user}": {"get": {
            "summary": "the user's presets, each with fits/why (now) and last_used (owner "
                       "and admins: scope servers)",
            "parameters": [_USER],
            "responses": _ok("user, presets", {
                "type": "object", "required": ["user", "presets"],
                "properties": {"user": {"type": "string"},
                               "presets": {"type": "array", "items": _PRESET}}})}},
        "/api/workbench/presets/{user}/{name}": {
            "get": {"summary": "one preset", "parameters": [_USER, _NAME],
                    "responses": _ok("the preset", _PRESET)},
            "put": {"summary": "create or replace (options, checked by the spawn request's "
                               "check) or rename (rename_to)",
                    "parameters": [_USER, _NAME],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"oneOf": [
                            {"type": "object", "required": ["options"],
                             "additionalProperties": False,
                             "properties": {"options": SPAWN_OPTIONS}},
                            {"type": "object", "required": ["rename_to"],
                             "additionalProperties": False,
                             "properties": {"rename_to": {
                                 "type": "string", "minLength": 1,
                                 "maxLength": MAX_NAME}}}]}}}},
                    "responses": _ok("the preset", _PRESET)},
            "delete": {"summary": "delete the preset", "parameters": [_USER, _NAME],
                       "responses": {"204": {"description": "deleted"}}}},
        "/api/workbench/sessions/{user}": {"get": {
            "summary": "the user's last 50 sessions, how each ended, what it cost and used "
                       "(the user, support and admins)",
            "parameters": [_USER],
            "responses": _ok("sessions, stale, as_of (and error when accounting did not "
                             "answer)", {
                                 "type": "object", "required": ["sessions", "stale"],
                                 "properties": {"sessions": {"type": "array"},
                                                "stale": {"type": "boolean"}}})}},
        "/api/batchspawner": {"post": {
            "summary": "a session's job reports the port its server listens on (with the "
                       "server's own token; spawners/api.py)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["port"], "additionalProperties": False,
                "properties": {"port": {"type": "integer", "minimum": 1,
                                        "maximum": 65535}}}}}},
            "responses": _ok("port recorded", code="201")}},
        "/api/workbench/walltime/{user}": _walltime([_USER]),
        "/api/workbench/walltime/{user}/{server}": _walltime([_USER, _SERVER]),
    }, self_path="/api/workbench/openapi.json", servers=[{"url": "/hub"}])


class OpenAPIHandler(APIHandler):
    """The document, to any logged-in user or token (it holds nothing about anyone)."""

    def get(self):
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(DOCUMENT))


def handlers() -> list[tuple]:
    """The hub's extra handler for the document (``c.JupyterHub.extra_handlers``)."""
    return [(ROUTE, OpenAPIHandler)]
