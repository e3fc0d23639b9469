"""What a caller sends, checked field by field into values: a call's body, a proposal's
(a draft may lack fields; :meth:`~.office.Office.submit` requires them), a review's scores.
Every refusal is a :class:`~.model.MeritError` naming the field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..allocations import Allocations
from ..allocations.guards import is_guard_name
from .model import (
    CRITERION_RE,
    MAX_ABSTRACT,
    MAX_REVIEWS,
    MAX_SCORE,
    MIN_SCORE,
    ORG_TYPES,
    PROGRAMMES,
    PROJECT_RE,
    Call,
    Criterion,
    MeritError,
    Proposal,
    choice,
    day,
    fields,
    iso,
    moment,
    names,
    number,
    text,
    whole,
)

CALL_FIELDS = {"name", "programme", "gpu_type", "gpu_hours", "max_per_proposal", "opens",
               "closes", "eligibility", "criteria", "reviews_needed"}
PROPOSAL_FIELDS = {"project", "organisation", "org_type", "abstract", "gpu_hours",
                   "gpu_type", "valid_from", "valid_until", "team", "datasets"}
_ORG_RE = re.compile(r"^[a-z-]{1,40}$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


def call_form(body, allocs: Allocations, gpus: dict[str, int], at: dt.datetime,
              by: str) -> Call:
    """The call ``body`` describes (id 0), every field checked: its programme in the
    allocations, a GPU type of the machine, dates in order and ahead, criteria with
    weights. What the programme's share has left is the office's to check."""
    body = fields(body, CALL_FIELDS, CALL_FIELDS - {"reviews_needed"})
    programme = choice(body, "programme", PROGRAMMES)
    if allocs.programme(programme) is None:
        raise MeritError(400, f"programme {programme} is not in the allocations file",
                         "programme")
    gpu_type = text(body, "gpu_type", 20)
    if gpu_type not in gpus:
        raise MeritError(400, f"gpu_type {gpu_type!r} is not on this machine (it has "
                         f"{', '.join(sorted(gpus))})", "gpu_type")
    hours = number(body, "gpu_hours")
    most = number(body, "max_per_proposal")
    if most > hours:
        raise MeritError(400, f"max_per_proposal {most:g} is more than the call offers "
                         f"({hours:g} GPU-hours)", "max_per_proposal")
    opens, closes = moment(body, "opens"), moment(body, "closes")
    if closes <= opens:
        raise MeritError(400, "closes must be after opens", "closes")
    if closes <= at:
        raise MeritError(400, f"closes {iso(closes)} is in the past", "closes")
    eligibility = names(body, "eligibility", _ORG_RE)
    bad = [e for e in eligibility if e not in ORG_TYPES]
    if bad or not eligibility:
        raise MeritError(400, f"eligibility must list organisation types of "
                         f"{', '.join(ORG_TYPES)}", "eligibility")
    criteria = criteria_form(body.get("criteria"))
    reviews_needed = whole(body, "reviews_needed", 1, MAX_REVIEWS) \
        if "reviews_needed" in body else 2
    return Call(0, text(body, "name"), programme, gpu_type, hours, most, opens, closes,
                eligibility, criteria, reviews_needed, by, iso(at))


def proposal_form(p: Proposal, call: Call, body, is_user: Callable[[str], bool],
                  datasets: Callable[[], Iterable[str]]) -> Proposal:
    """``p`` with the fields of ``body``, each checked as it is given (a draft may lack
    some; :meth:`~.office.Office.submit` requires them): ``is_user(name)`` for the team,
    ``datasets()`` the catalogue's ids."""
    body = fields(body, PROPOSAL_FIELDS)
    given = {}
    if "project" in body:
        project = text(body, "project", 63)
        if not PROJECT_RE.match(project) or project == "root" or is_guard_name(project):
            raise MeritError(400, f"project {project!r} must be a valid Slurm account "
                             "name: lower-case letters, digits, '-' or '_', starting with "
                             "a letter, at most 63 (not root, guard-*, unreserved)",
                             "project")
        given["project"] = project
    if "organisation" in body:
        given["organisation"] = text(body, "organisation")
    if "org_type" in body:
        org_type = choice(body, "org_type", ORG_TYPES)
        if org_type not in call.eligibility:
            raise MeritError(400, f"org_type {org_type} is not eligible for call "
                             f"{call.name} (eligible: {', '.join(call.eligibility)})",
                             "org_type")
        given["org_type"] = org_type
    if "abstract" in body:
        given["abstract"] = text(body, "abstract", MAX_ABSTRACT)
    if "gpu_hours" in body:
        hours = number(body, "gpu_hours")
        if hours > call.max_per_proposal:
            raise MeritError(400, f"gpu_hours {hours:g} is over the call's maximum of "
                             f"{call.max_per_proposal:g} per proposal", "gpu_hours")
        given["gpu_hours"] = hours
    if "gpu_type" in body and body["gpu_type"] != call.gpu_type:
        raise MeritError(400, f"gpu_type must be the call's, {call.gpu_type}", "gpu_type")
    given["gpu_type"] = call.gpu_type
    for name in ("valid_from", "valid_until"):
        if name in body:
            given[name] = day(body, name)
    start = given.get("valid_from", p.valid_from)
    end = given.get("valid_until", p.valid_until)
    if start and end and end < start:
        raise MeritError(400, "valid_until is before valid_from", "valid_until")
    if "team" in body:
        team = names(body, "team")
        missing = [m for m in team if not is_user(m)]
        if missing:
            raise MeritError(400, f"team member {missing[0]!r} is no user of this "
                             "machine", "team")
        given["team"] = tuple(m for m in team if m != p.applicant)
    if "datasets" in body:
        wanted = names(body, "datasets", _DATASET_RE)
        known = set(datasets())
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise MeritError(400, f"dataset {unknown[0]!r} is not in the catalogue",
                             "datasets")
        given["datasets"] = wanted
    return replace(p, **given)


def criteria_form(raw) -> tuple[Criterion, ...]:
    usage = ("criteria must be a list of {name, weight}: names of lower-case letters, weights "
             "> 0, e.g. [{\"name\": \"excellence\", \"weight\": 2}]")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 10:
        raise MeritError(400, usage, "criteria")
    out = []
    for c in raw:
        if not isinstance(c, dict) or set(c) != {"name", "weight"} or \
                not isinstance(c["name"], str) or not CRITERION_RE.match(c["name"]):
            raise MeritError(400, usage, "criteria")
        out.append(Criterion(c["name"], number(c, "weight", 0, 100)))
    if len({c.name for c in out}) != len(out):
        raise MeritError(400, "criteria names must differ", "criteria")
    return tuple(out)


def scores_form(raw, call: Call) -> dict[str, int]:
    wanted = [c.name for c in call.criteria]
    if not isinstance(raw, dict) or set(raw) != set(wanted):
        raise MeritError(400, f"scores must score each criterion: {', '.join(wanted)}",
                         "scores")
    for name in wanted:
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or \
                not MIN_SCORE <= value <= MAX_SCORE:
            raise MeritError(400, f"scores: {name} must be a whole number from {MIN_SCORE} "
                             f"to {MAX_SCORE}, not {value!r}", "scores")
    return {name: raw[name] for name in wanted}

