"""The access service's API as an OpenAPI 3 document, served at ``api/openapi.json``
(``tests/unit/test_access_service.py`` checks that every route is in it, and
``tests/unit/test_fuzz_services.py`` fuzzes the service from it)."""

from __future__ import annotations

from workbench.merit.model import (
    MAX_ABSTRACT,
    MAX_GPU_HOURS,
    MAX_ID,
    MAX_LIST,
    MAX_NAME,
    MAX_REVIEWS,
    MAX_SCORE,
    MAX_TEXT,
    MIN_SCORE,
    ORG_TYPES,
    PROGRAMMES,
)
from workbench.openapi import openapi

_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_HOURS = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": MAX_GPU_HOURS}
_USER = {"type": "string", "pattern": "^[a-z_][a-z0-9_-]{0,31}$"}
_DAY = {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_MOMENT = {"type": "string", "format": "date-time"}


def _ok(description: str, code: str = "200") -> dict:
    return {code: {"description": description, "content": _OBJECT}}


def _body(properties: dict, required: list[str] = ()) -> dict:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "properties": properties,
        **({"required": list(required)} if required else {})}}}}


_CALL = {
    "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": r"\S"},
    "programme": {"type": "string", "enum": list(PROGRAMMES)},
    "gpu_type": {"type": "string", "minLength": 1, "maxLength": 20, "pattern": r"\S"},
    "gpu_hours": _HOURS, "max_per_proposal": _HOURS,
    "opens": _MOMENT, "closes": _MOMENT,
    "eligibility": {"type": "array", "minItems": 1, "maxItems": len(ORG_TYPES),
                    "items": {"type": "string", "enum": list(ORG_TYPES)}},
    "criteria": {"type": "array", "minItems": 1, "maxItems": 10, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "weight"],
        "properties": {"name": {"type": "string", "pattern": "^[a-z][a-z0-9 _-]{0,39}$"},
                       "weight": {"type": "number", "exclusiveMinimum": True, "minimum": 0,
                                  "maximum": 100}}}},
    "reviews_needed": {"type": "integer", "minimum": 1, "maximum": MAX_REVIEWS},
}
_PROPOSAL = {
    "project": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$",
                "description": "the project's Slurm account name"},
    "organisation": {"type": "string", "minLength": 1, "maxLength": MAX_NAME,
                     "pattern": r"\S"},
    "org_type": {"type": "string", "enum": list(ORG_TYPES)},
    "abstract": {"type": "string", "minLength": 1, "maxLength": MAX_ABSTRACT,
                 "pattern": r"\S"},
    "gpu_hours": _HOURS,
    "gpu_type": {"type": "string", "maxLength": 20},
    "valid_from": _DAY, "valid_until": _DAY,
    "team": {"type": "array", "maxItems": MAX_LIST, "items": _USER},
    "datasets": {"type": "array", "maxItems": MAX_LIST, "items": {
        "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"}},
}

DOCUMENT = openapi("access", "Merit-based access: calls, proposals, peer review, awards", {
    "/api/calls": {
        "get": {"summary": "every call, its state from its dates, what it has left",
                "responses": _ok("calls")},
        "post": {"summary": "open a call (group managers)",
                 "requestBody": _body(_CALL, sorted(set(_CALL) - {"reviews_needed"})),
                 "responses": _ok("the call", "201")}},
    "/api/calls/{id}": {"get": {"summary": "one call", "parameters": [_ID],
                                "responses": _ok("the call")}},
    "/api/calls/{id}/proposals": {
        "get": {"summary": "managers: the ranking (weighted scores, requested against "
                "offered, the programme's share); anyone else: their own proposals",
                "parameters": [_ID], "responses": _ok("call and proposals")},
        "post": {"summary": "start a proposal (a draft) in an open call",
                 "parameters": [_ID], "requestBody": _body(_PROPOSAL),
                 "responses": _ok("the draft", "201")}},
    "/api/proposals": {"get": {
        "summary": "the caller's proposals and those assigned to her for review",
        "responses": _ok("proposals and to_review")}},
    "/api/proposals/{id}": {
        "get": {"summary": "one proposal (applicants never see reviewers' names)",
                "parameters": [_ID], "responses": _ok("the proposal")},
        "patch": {"summary": "edit a draft (its applicant)", "parameters": [_ID],
                  "requestBody": _body(_PROPOSAL), "responses": _ok("the draft")}},
    "/api/proposals/{id}/submit": {"post": {
        "summary": "submit a draft before the call's cut-off: eligibility is checked and "
        "reviewers assigned", "parameters": [_ID], "responses": _ok("the proposal")}},
    "/api/proposals/{id}/reviews": {"post": {
        "summary": "score each criterion (an assigned reviewer, once)", "parameters": [_ID],
        "requestBody": _body({
            "scores": {"type": "object", "maxProperties": 10, "additionalProperties": {
                "type": "integer", "minimum": MIN_SCORE, "maximum": MAX_SCORE}},
            "comment": {"type": "string", "maxLength": MAX_TEXT}}, ["scores"]),
        "responses": _ok("the review", "201")}},
    "/api/proposals/{id}/conflict": {"post": {
        "summary": "declare a conflict of interest: another reviewer takes the seat",
        "parameters": [_ID],
        "requestBody": _body({"reason": {"type": "string", "maxLength": MAX_TEXT}}),
        "responses": _ok("who was assigned in her place")}},
    "/api/proposals/{id}/decision": {"post": {
        "summary": "award (the project is in Slurm at once), reject with a reason, or find "
        "not eligible (group managers)", "parameters": [_ID],
        "requestBody": _body({
            "decision": {"type": "string", "enum": ["award", "reject", "not-eligible"]},
            "gpu_hours": _HOURS, "valid_from": _DAY, "valid_until": _DAY,
            "reason": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                       "pattern": r"\S"}}, ["decision"]),
        "responses": _ok("the proposal, and what changed in Slurm")}},
    "/api/summary": {"get": {
        "summary": "managers: calls, proposals by state, hours from submission to decision, "
        "awarded against offered and against each programme's share",
        "responses": _ok("the summary")}},
    "/api/reviewer": {"put": {
        "summary": "a reviewer's organisation (she is never given its proposals)",
        "requestBody": _body({"organisation": {"type": "string", "minLength": 1,
                                               "maxLength": MAX_NAME, "pattern": r"\S"}},
                             ["organisation"]),
        "responses": _ok("the organisation")}},
})
