"""OpenAPI 3 documents of the workbench's JSON APIs: the hub services' (each at
``.../api/openapi.json``: ``extensions/catalogue/openapi.py``, ``extensions/help/openapi.py``)
and the hub's own ``/hub/api/workbench/...`` (``spawners/openapi.py``). One shape for all:
a hub token in the ``Authorization`` header, and every refusal ``{"message": ...}``. Tests
check each document against the routes served, and fuzz the APIs from them.
"""

from __future__ import annotations


def openapi(title: str, description: str, paths: dict, self_path: str = "/api/openapi.json",
            servers: list[dict] | None = None) -> dict:
    """An OpenAPI 3 document of a service's API: ``paths`` relative to the service prefix
    (or to ``servers``' URL), every operation answering errors as ``{"message": ...}``
    (401, 403, 400, 413 ...); the document itself is served at ``self_path``."""
    error = {"description": "refused, with the reason",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operations in paths.values():
        for operation in operations.values():
            operation.setdefault("responses", {}).setdefault("default", error)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "description": description, "version": "1"},
        "security": [{"hubToken": []}],
        **({"servers": servers} if servers else {}),
        "paths": {self_path: {"get": {
            "summary": "this document",
            "responses": {"200": {"description": "OpenAPI 3", "content": {
                "application/json": {"schema": {"type": "object"}}}}, "default": error}}},
            **paths},
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["message"],
                                  "properties": {"message": {"type": "string"}}}},
            "securitySchemes": {"hubToken": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "a hub token: 'token <token>' (or the service's OAuth cookie)"}},
        },
    }
