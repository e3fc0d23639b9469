"""The catalogue service's API as an OpenAPI 3 document, served at ``api/openapi.json``
(``tests/unit/test_hostile_input.py`` checks that every route is in it)."""

from __future__ import annotations

from workbench.openapi import openapi

#: the longest value of a query parameter, and of a name (project, node)
MAX_QUERY, MAX_NAME = 200, 100

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "the dataset's id, e.g. crop-yields"}
_PROJECT = {"name": "project", "in": "query", "schema": {"type": "string", "maxLength": MAX_NAME},
            "description": "the project the caller acts for (one of theirs)"}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _text(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "schema": {"type": "string", "maxLength": MAX_QUERY},
            "description": description}


def _ok(description: str) -> dict:
    return {"200": {"description": description, "content": _OBJECT}}


DOCUMENT = openapi("catalogue", "Governed datasets: search, licences, open (DCAT-AP)", {
    "/api/datasets": {"get": {
        "summary": "a page of the matching datasets, each with the caller's access",
        "parameters": [
            _text("q", "words to search for"), _text("theme", "an EU data theme, e.g. ENER"),
            _text("licence", "a licence id"), _text("format", "a format, e.g. PARQUET"),
            {"name": "personal_data", "in": "query",
             "schema": {"type": "string", "enum": ["true", "false", "yes", "no", "1", "0"]}},
            _text("data_space", "a data space"), _PROJECT,
            {"name": "offset", "in": "query",
             "schema": {"type": "integer", "minimum": 0, "default": 0}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 100}},
        ],
        "responses": _ok("datasets, count, offset, limit")}},
    "/api/datasets/{id}": {"get": {
        "summary": "one dataset with the caller's access (path only when readable)",
        "parameters": [_ID, _PROJECT], "responses": _ok("the dataset")}},
    "/api/datasets/{id}/licence": {"post": {
        "summary": "accept the dataset's licence", "parameters": [_ID],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["accept"], "additionalProperties": False,
            "properties": {"accept": {"type": "boolean", "enum": [True]}}}}}},
        "responses": _ok("the acceptance and the caller's access now")}},
    "/api/datasets/{id}/open": {"post": {
        "summary": "open the dataset (audited, attached to the job)", "parameters": [_ID],
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "job_id": {"type": "integer", "minimum": 1},
                "node": {"type": "string", "maxLength": MAX_NAME},
                "project": {"type": "string", "maxLength": MAX_NAME}}}}}},
        "responses": _ok("the path and distributions")}},
    "/api/catalogue.jsonld": {"get": {
        "summary": "the whole catalogue as DCAT-AP 3 JSON-LD",
        "responses": {"200": {"description": "JSON-LD", "content": {
            "application/ld+json": {"schema": {"type": "object"}}}}}}},
})
