"""Calls, proposals and reviews as plain values, and the checks of what a caller sends.

Every refusal is a :class:`MeritError` with an HTTP status, a message and the field it is
about; nothing was changed when one is raised.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from ..webinput import BadInput

#: organisation types a call may admit
ORG_TYPES = ("startup", "sme", "public-research", "industry")
#: programmes a call is for (the allocations file's programmes of these names)
PROGRAMMES = ("startups", "research", "industry")
#: a project name: a Slurm account name, as the allocations file's (lower case, <= 63)
PROJECT_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: a user name (Unix)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: a criterion's name
CRITERION_RE = re.compile(r"^[a-z][a-z0-9 _-]{0,39}$")
#: RFC 3339 date-times and dates, ASCII digits only
MOMENT_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                       r"(Z|[+-][0-9]{2}:[0-9]{2})$")
DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
MAX_NAME, MAX_TEXT, MAX_ABSTRACT, MAX_LIST = 200, 4000, 20000, 50
MIN_SCORE, MAX_SCORE = 1, 5
MAX_REVIEWS = 10
#: the largest id: the ``id`` columns are 32-bit integers on PostgreSQL
MAX_ID = 2**31 - 1
#: the most GPU-hours anything asks for (a sanity bound; shares limit far below it)
MAX_GPU_HOURS = 10_000_000


class MeritError(BadInput):
    """A refusal: ``status`` (400, 403, 404, 409), ``message`` for the caller and ``field``
    (the body field or parameter it is about); nothing was changed."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(status, message, field)

    @property
    def extra(self) -> dict:
        return {"field": self.field} if self.field else {}


class CallState(StrEnum):
    UPCOMING = "upcoming"
    OPEN = "open"
    CLOSED = "closed"


class State(StrEnum):
    """A proposal's state: draft → submitted → eligible / not-eligible → in-review →
    reviewed → awarded / rejected."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    ELIGIBLE = "eligible"
    NOT_ELIGIBLE = "not-eligible"
    IN_REVIEW = "in-review"
    REVIEWED = "reviewed"
    AWARDED = "awarded"
    REJECTED = "rejected"

    @property
    def final(self) -> bool:
        return self in (State.NOT_ELIGIBLE, State.AWARDED, State.REJECTED)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds") if t else None


@dataclass(frozen=True)
class Criterion:
    name: str
    weight: float


@dataclass(frozen=True)
class Call:
    id: int
    name: str
    programme: str
    gpu_type: str
    gpu_hours: float            # on offer
    max_per_proposal: float
    opens: dt.datetime
    closes: dt.datetime         # the cut-off
    eligibility: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    reviews_needed: int
    created_by: str = ""
    created_at: str = ""

    def state(self, at: dt.datetime | None = None) -> CallState:
        """From the dates, at read time: a call closes by itself, across restarts too."""
        at = at or now()
        if at < self.opens:
            return CallState.UPCOMING
        return CallState.OPEN if at < self.closes else CallState.CLOSED

    def score(self, scores: dict[str, int]) -> float:
        """One review's weighted score (1-5)."""
        total = sum(c.weight for c in self.criteria)
        return sum(scores[c.name] * c.weight for c in self.criteria) / total

    def to_json(self, at: dt.datetime | None = None) -> dict:
        return {"id": self.id, "name": self.name, "programme": self.programme,
                "gpu_type": self.gpu_type, "gpu_hours": self.gpu_hours,
                "max_per_proposal": self.max_per_proposal, "opens": iso(self.opens),
                "closes": iso(self.closes), "eligibility": list(self.eligibility),
                "criteria": [{"name": c.name, "weight": c.weight} for c in self.criteria],
                "reviews_needed": self.reviews_needed, "state": self.state(at).value,
                "created_by": self.created_by, "created_at": self.created_at}


@dataclass(frozen=True)
class Proposal:
    id: int
    call: int
    applicant: str
    project: str = ""
    organisation: str = ""
    org_type: str = ""
    abstract: str = ""
    gpu_hours: float = 0
    gpu_type: str = ""
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    team: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    state: State = State.DRAFT
    reason: str = ""
    created_at: str = ""
    submitted_at: str = ""
    decided_at: str = ""
    decided_by: str = ""
    awarded_hours: float = 0
    award: int = 0

    @property
    def members(self) -> tuple[str, ...]:
        """The applicant and the team: the project's Slurm users."""
        return tuple(dict.fromkeys((self.applicant, *self.team)))

    def to_json(self) -> dict:
        return {"id": self.id, "call": self.call, "applicant": self.applicant,
                "project": self.project, "organisation": self.organisation,
                "org_type": self.org_type, "abstract": self.abstract,
                "gpu_hours": self.gpu_hours, "gpu_type": self.gpu_type,
                "valid_from": self.valid_from.isoformat() if self.valid_from else None,
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
                "team": list(self.team), "datasets": list(self.datasets),
                "state": self.state.value, "reason": self.reason,
                "created_at": self.created_at, "submitted_at": self.submitted_at or None,
                "decided_at": self.decided_at or None, "awarded_hours": self.awarded_hours,
                "award": self.award or None}


@dataclass(frozen=True)
class Review:
    proposal: int
    reviewer: str
    scores: dict[str, int]
    comment: str
    at: str
    score: float = 0.0

    def to_json(self, anonymous_as: str | None = None) -> dict:
        """``anonymous_as``: the name an applicant sees ("reviewer 1") in place of hers."""
        return {"reviewer": anonymous_as or self.reviewer, "scores": dict(self.scores),
                "comment": self.comment, "at": self.at, "score": round(self.score, 3)}


@dataclass(frozen=True)
class Assignment:
    proposal: int
    reviewer: str
    conflict: bool = False
    reason: str = ""


# -- checks of single values -------------------------------------------------------------

def fields(body, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(body, dict):
        raise MeritError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise MeritError(400, f"unknown field {unknown[0]!r}; allowed: "
                         f"{', '.join(sorted(allowed))}", unknown[0])
    for name in sorted(required):
        if body.get(name) in (None, "", []):
            raise MeritError(400, f"{name} is required", name)
    return body


def text(body: dict, name: str, limit: int = MAX_NAME, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise MeritError(400, f"{name} must be a non-empty string", name)
    if len(value) > limit:
        raise MeritError(400, f"{name} is {len(value)} characters long; at most {limit}", name)
    return value.strip()


def number(body: dict, name: str, low: float = 0, high: float = MAX_GPU_HOURS,
           exclusive_low: bool = True) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value > high or \
            (value <= low if exclusive_low else value < low):
        raise MeritError(400, f"{name} must be a number {'>' if exclusive_low else '>='} "
                         f"{low:g} and <= {high:g}, not {value!r}", name)
    return float(value)


def whole(body: dict, name: str, low: int, high: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MeritError(400, f"{name} must be a whole number from {low} to {high}, "
                         f"not {value!r}", name)
    return value


def choice(body: dict, name: str, allowed) -> str:
    value = body.get(name)
    if value not in allowed:
        raise MeritError(400, f"{name} must be one of {', '.join(allowed)}, not {value!r}",
                         name)
    return value


def moment(body: dict, name: str) -> dt.datetime:
    """An RFC 3339 date-time with its offset (``2026-12-31T17:00:00Z``)."""
    value = body.get(name)
    try:
        t = dt.datetime.fromisoformat(value) \
            if isinstance(value, str) and MOMENT_RE.match(value) else None
    except ValueError:
        t = None
    if t is None:
        raise MeritError(400, f"{name} must be a date and time like 2026-12-31T17:00:00Z, "
                         f"not {value!r}", name)
    return t.astimezone(dt.UTC)


def day(body: dict, name: str) -> dt.date | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) and DAY_RE.match(value) \
            else _bad_day(name, value)
    except ValueError:
        return _bad_day(name, value)


def _bad_day(name: str, value):
    raise MeritError(400, f"{name} must be a date like 2026-12-31, not {value!r}", name)


def names(body: dict, name: str, pattern: re.Pattern = USER_RE) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list) or len(value) > MAX_LIST or \
            not all(isinstance(v, str) and pattern.match(v) for v in value):
        raise MeritError(400, f"{name} must be a list of at most {MAX_LIST} names", name)
    return tuple(dict.fromkeys(value))

