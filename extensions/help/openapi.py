"""The help service's API as an OpenAPI 3 document, served at ``api/openapi.json``
(``tests/unit/test_hostile_input.py`` checks that every route is in it)."""

from __future__ import annotations

from workbench.help.store import MAX_ID, MAX_MESSAGE, MAX_MINUTES, MAX_NOTEBOOK, MIN_MINUTES
from workbench.openapi import openapi

_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
_REQUEST = {"application/json": {"schema": {"type": "object"}}}


def _ok(description: str, code: str = "200") -> dict:
    return {code: {"description": description, "content": _REQUEST}}


DOCUMENT = openapi("help", "Help requests: share your server with support for a while", {
    "/api/requests": {
        "get": {"summary": "the caller's requests (support: every open one too)",
                "responses": _ok("requests")},
        "post": {"summary": "ask support for help with the caller's running server",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"type": "object", "additionalProperties": False,
                                "required": ["message"], "properties": {
                                    "message": {"type": "string", "maxLength": MAX_MESSAGE},
                                    "notebook": {"type": "string", "maxLength": MAX_NOTEBOOK,
                                                 "description": "a path inside the server"},
                                    "minutes": {"type": "integer", "minimum": MIN_MINUTES,
                                                "maximum": MAX_MINUTES},
                                    "server": {"type": "string", "maxLength": 255},
                                    "user": {"type": "string"}}}}}},
                 "responses": _ok("the request", "201")}},
    "/api/requests/{id}": {
        "get": {"summary": "one request", "parameters": [_ID], "responses": _ok("the request")},
        "patch": {"summary": "support keeps access N minutes from now (owner)",
                  "parameters": [_ID],
                  "requestBody": {"required": True, "content": {"application/json": {
                      "schema": {"type": "object", "additionalProperties": False,
                                 "required": ["minutes"], "properties": {"minutes": {
                                     "type": "integer", "minimum": 1,
                                     "maximum": MAX_MINUTES}}}}}},
                  "responses": _ok("the request")},
        "delete": {"summary": "stop sharing (owner or support)", "parameters": [_ID],
                   "responses": _ok("the ended request")}},
    "/api/requests/{id}/join": {"post": {
        "summary": "support joins: the server is shared with the caller", "parameters": [_ID],
        "responses": _ok("the request, with lab_url")}},
    "/api/access": {"get": {
        "summary": "who may open the caller's server now",
        "parameters": [{"name": "server", "in": "query", "schema": {"type": "string"}}],
        "responses": _ok("user, server, access")}},
})
