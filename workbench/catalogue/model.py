"""The catalogue file: datasets, their distributions and access policy, read with line numbers.

The file (YAML; the demo's is ``cluster/catalogue.yaml``, a site's
``$AIFACTORY_HOME/etc/catalogue.yaml`` takes precedence)::

    catalogue:
      title: AI Factory data catalogue
      description: ...
      publisher: {name: AI Factory, url: https://example.org/}
    datasets:
      grid-load:                                # the id: lower-case letters, digits, '-'
        title: Hourly grid load per region
        description: ...
        data_space: energy                      # a Common European Data Space
        theme: ENER                             # EU data-theme vocabulary code
        publisher: {name: ..., url: ...}
        keywords: [electricity, load]
        licence: http://publications.europa.eu/resource/authority/licence/CC_BY_4_0
        licence_title: Creative Commons Attribution 4.0
        access_rights: PUBLIC                   # PUBLIC, RESTRICTED or NON_PUBLIC
        personal_data: false
        source: public                          # public, third-party or other (AI Act)
        distributions:
          - {file: grid_load.parquet, format: PARQUET}
        access:                                 # the workbench's policy
          programmes: [startups, research]      # or `all`
          projects: []                          # single projects, beside the programmes
          licence_acceptance: false             # true: each user accepts licence_text first
          licence_text: ...

:func:`load` checks every entry on its own: a malformed one is reported with its id and line
and skipped, the others load (``Catalogue.errors``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from .. import linedyaml
from ..linedyaml import Lined
from ..paths import FactoryHome
from .search import Hits, SearchIndex

#: a dataset id: also its directory name on the shared storage, so no '/', '.', '..'
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,126}$")
#: the EU data-theme vocabulary (http://publications.europa.eu/resource/authority/data-theme)
THEMES = {"AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "OP_DATPRO",
          "REGI", "SOCI", "TECH", "TRAN"}
ACCESS_RIGHTS = ("PUBLIC", "RESTRICTED", "NON_PUBLIC")
#: where a dataset comes from, in the AI Act template's words
SOURCES = {"public": "publicly available dataset",
           "third-party": "private dataset from a third party",
           "other": "other source"}
FORMATS = {"PARQUET": "application/vnd.apache.parquet", "CSV": "text/csv",
           "JSON": "application/json"}
_DATASET_KEYS = {"title", "description", "data_space", "theme", "publisher", "keywords",
                 "licence", "licence_title", "access_rights", "personal_data", "source",
                 "distributions", "access", "issued", "contact"}
_REQUIRED = ("title", "description", "theme", "publisher", "licence", "access_rights",
             "distributions", "access")
_ACCESS_KEYS = {"programmes", "projects", "licence_acceptance", "licence_text"}


class CatalogueError(ValueError):
    """The catalogue file cannot be read at all (not one entry)."""


@dataclass(frozen=True)
class Publisher:
    name: str
    url: str = ""


@dataclass(frozen=True)
class Distribution:
    """One file of a dataset, relative to the dataset's directory."""

    file: str
    format: str
    media_type: str
    byte_size: int | None = None
    checksum: str | None = None  # sha256, hex

    def as_dict(self) -> dict:
        return {"file": self.file, "format": self.format, "media_type": self.media_type,
                "byte_size": self.byte_size, "checksum": self.checksum}


@dataclass(frozen=True)
class AccessPolicy:
    """Who may read a dataset: members of these programmes' or projects' allocations, and,
    when ``licence_acceptance``, only after accepting ``licence_text``."""

    programmes: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    everyone: bool = False
    licence_acceptance: bool = False
    licence_text: str = ""

    def describe(self) -> str:
        """In words: ``programmes research; projects startup-helios``."""
        if self.everyone:
            who = "every project"
        else:
            parts = []
            if self.programmes:
                parts.append("programme" + ("s " if len(self.programmes) > 1 else " ") +
                             ", ".join(self.programmes))
            if self.projects:
                parts.append("project" + ("s " if len(self.projects) > 1 else " ") +
                             ", ".join(self.projects))
            who = " and ".join(parts) or "nobody"
        return who + (" (after accepting its licence)" if self.licence_acceptance else "")


@dataclass(frozen=True)
class Dataset:
    id: str
    title: str
    description: str
    theme: str
    publisher: Publisher
    licence: str
    access_rights: str
    distributions: tuple[Distribution, ...]
    access: AccessPolicy
    data_space: str = ""
    licence_title: str = ""
    keywords: tuple[str, ...] = ()
    personal_data: bool = False
    source: str = "public"
    issued: str = ""
    contact: str = ""
    line: int = 0

    @cached_property
    def formats(self) -> list[str]:
        return sorted({d.format for d in self.distributions})

    @property
    def byte_size(self) -> int | None:
        sizes = [d.byte_size for d in self.distributions]
        return None if any(s is None for s in sizes) else sum(sizes)

    @cached_property
    def search_text(self) -> str:
        return " ".join([self.id, self.title, self.description, self.publisher.name,
                         self.data_space, *self.keywords]).lower()

    def metadata(self) -> dict:
        """Everything about the dataset a caller may see whatever its access (no paths)."""
        return dict(self._metadata)

    @cached_property
    def _metadata(self) -> dict:
        return {
            "id": self.id, "title": self.title, "description": self.description,
            "data_space": self.data_space, "theme": self.theme,
            "publisher": {"name": self.publisher.name, "url": self.publisher.url},
            "keywords": list(self.keywords), "licence": self.licence,
            "licence_title": self.licence_title or self.licence,
            "access_rights": self.access_rights, "personal_data": self.personal_data,
            "source": self.source, "formats": self.formats, "byte_size": self.byte_size,
            "issued": self.issued,
            "who_may_use": self.access.describe(),
            "licence_acceptance": self.access.licence_acceptance,
        }


@dataclass(frozen=True)
class EntryError:
    """A malformed entry, skipped: ``path:line: dataset ID: what``."""

    dataset: str
    line: int
    message: str
    path: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: dataset {self.dataset}: {self.message}"


@dataclass(frozen=True)
class Catalogue:
    datasets: tuple[Dataset, ...]
    errors: tuple[EntryError, ...] = ()
    title: str = "AI Factory data catalogue"
    description: str = ""
    publisher: Publisher = field(default_factory=lambda: Publisher("AI Factory"))
    path: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "_by_id", {d.id: d for d in self.datasets})

    def get(self, dataset_id: str) -> Dataset | None:
        return self._by_id.get(dataset_id)  # type: ignore[attr-defined]

    @cached_property
    def index(self):
        """The :class:`~workbench.catalogue.search.SearchIndex` of its datasets."""
        return SearchIndex(self.datasets)

    def search(self, q: str = "", **filters) -> list[Dataset]:
        """The datasets matching ``q`` and the filters (see :mod:`.search`)."""
        return self.index.search(q, **filters)

    def find(self, q: str = "", **filters) -> Hits:
        """The same matches, counted, for cutting one page (:class:`.search.Hits`)."""
        return self.index.find(q, **filters)

    @property
    def ids(self) -> list[str]:
        return [d.id for d in self.datasets]


# -- loading ------------------------------------------------------------------------------



class _LineLoader(getattr(yaml, "CSafeLoader", linedyaml.LineLoader)):
    """:class:`workbench.linedyaml.LineLoader`'s mappings and lists (lines, keys written
    twice) on libyaml's parser when PyYAML has it: a catalogue of 100,000 entries is read in
    a third of the time of the pure-Python parser."""


_LineLoader.yaml_constructors = dict(linedyaml.LineLoader.yaml_constructors)


def _parse(text: str):
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeEncodeError:  # a lone surrogate, which libyaml cannot take: the pure
        return linedyaml.load(text)  # parser refuses it with a YAMLError naming the place


def default_path(home: FactoryHome | None = None) -> Path:
    """The catalogue in force (:meth:`~workbench.paths.FactoryHome.config_file`)."""
    return (home or FactoryHome.from_env()).config_file("catalogue.yaml")


class _Bad(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def _str(spec: Lined, key: str, required: bool = False, default: str = "") -> str:
    value = spec.get(key)
    if value is None:
        if required:
            raise _Bad(spec.line, f"{key} is missing")
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _Bad(spec.line_of(key), f"{key} must be text, not {type(value).__name__}")
    text = str(value).strip()
    if required and not text:
        raise _Bad(spec.line_of(key), f"{key} is empty")
    return text


def _names(spec, key) -> tuple[str, ...]:
    value = spec.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(spec.line_of(key), f"{key} must be a list of names")
    return tuple(value)


def _distribution(raw, line: int) -> Distribution:
    if not isinstance(raw, dict):
        raise _Bad(line, "each distribution must be a mapping with file and format")
    line = getattr(raw, "line", line)
    file = raw.get("file")
    if not isinstance(file, str) or not _FILE_RE.fullmatch(file):
        raise _Bad(line, f"distribution file {file!r} must be a plain file name (no '/' or "
                   "'..'), relative to the dataset's directory")
    fmt = str(raw.get("format", "")).upper()
    if fmt not in FORMATS:
        raise _Bad(line, f"distribution format {raw.get('format')!r}; allowed: "
                   f"{', '.join(sorted(FORMATS))}")
    size = raw.get("byte_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise _Bad(line, f"byte_size must be a whole number >= 0, not {size!r}")
    checksum = raw.get("checksum")
    if checksum is not None and not re.fullmatch(r"[0-9a-f]{64}", str(checksum)):
        raise _Bad(line, "checksum must be a sha256 in hex (64 characters)")
    return Distribution(file, fmt, FORMATS[fmt], size, checksum)


def _policy(raw) -> AccessPolicy:
    if not isinstance(raw, dict):
        raise _Bad(getattr(raw, "line", 0), "access must be a mapping (programmes, projects, "
                   "licence_acceptance, licence_text)")
    unknown = set(raw) - _ACCESS_KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise _Bad(raw.line_of(key), f"access: unknown key {key!r}; allowed: "
                   f"{', '.join(sorted(_ACCESS_KEYS))}")
    everyone = raw.get("programmes") == "all"
    programmes = () if everyone else _names(raw, "programmes")
    projects = _names(raw, "projects")
    gated = raw.get("licence_acceptance", False)
    if not isinstance(gated, bool):
        raise _Bad(raw.line_of("licence_acceptance"), "licence_acceptance must be true or false")
    text = _str(raw, "licence_text")
    if gated and not text:
        raise _Bad(raw.line_of("licence_acceptance"),
                   "licence_acceptance needs licence_text (shown to users in full)")
    return AccessPolicy(programmes, projects, everyone, gated, text)


def parse_dataset(dataset_id, spec, line: int = 0) -> Dataset:
    """One entry (its id on ``line``); raises ``_Bad`` (line, message) when malformed."""
    line = line or getattr(spec, "line", 0)
    if not isinstance(dataset_id, str) or not ID_RE.fullmatch(dataset_id):
        raise _Bad(line, "the id must be lower-case letters, digits and '-' (at most 63)")
    if not isinstance(spec, dict):
        raise _Bad(line, "must be a mapping")
    unknown = set(spec) - _DATASET_KEYS
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise _Bad(spec.line_of(key), f"unknown key {key!r}; allowed: "
                   f"{', '.join(sorted(_DATASET_KEYS))}")
    for key in _REQUIRED:
        if spec.get(key) in (None, "", []):
            raise _Bad(line, f"{key} is missing")
    theme = _str(spec, "theme", True).upper()
    if theme not in THEMES:
        raise _Bad(spec.line_of("theme"), f"theme {theme!r} is not in the EU data-theme "
                   f"vocabulary ({', '.join(sorted(THEMES))})")
    pub = spec["publisher"]
    if isinstance(pub, str):
        publisher = Publisher(pub)
    elif isinstance(pub, dict) and isinstance(pub.get("name"), str):
        publisher = Publisher(pub["name"], str(pub.get("url") or ""))
    else:
        raise _Bad(spec.line_of("publisher"), "publisher must be a name or {name, url}")
    licence = _str(spec, "licence", True)
    if not re.match(r"^https?://\S+$", licence):
        raise _Bad(spec.line_of("licence"), f"licence must be a URI (dct:license), not "
                   f"{licence!r}")
    rights = _str(spec, "access_rights", True).upper()
    if rights not in ACCESS_RIGHTS:
        raise _Bad(spec.line_of("access_rights"),
                   f"access_rights {rights!r}; allowed: {', '.join(ACCESS_RIGHTS)}")
    personal = spec.get("personal_data", False)
    if not isinstance(personal, bool):
        raise _Bad(spec.line_of("personal_data"), "personal_data must be true or false")
    source = _str(spec, "source", default="public")
    if source not in SOURCES:
        raise _Bad(spec.line_of("source"), f"source {source!r}; allowed: "
                   f"{', '.join(SOURCES)}")
    dists = spec["distributions"]
    if not isinstance(dists, list):
        raise _Bad(spec.line_of("distributions"), "distributions must be a list")
    distributions = tuple(_distribution(d, spec.line_of("distributions")) for d in dists)
    if len({d.file for d in distributions}) != len(distributions):
        raise _Bad(spec.line_of("distributions"), "a distribution file is listed twice")
    return Dataset(
        id=dataset_id, title=_str(spec, "title", True),
        description=_str(spec, "description", True), theme=theme, publisher=publisher,
        licence=licence, access_rights=rights, distributions=distributions,
        access=_policy(spec["access"]), data_space=_str(spec, "data_space"),
        licence_title=_str(spec, "licence_title"), keywords=_names(spec, "keywords"),
        personal_data=personal, source=source, issued=_str(spec, "issued"),
        contact=_str(spec, "contact"), line=line)


def load(path: Path | str | None = None, text: str | None = None) -> Catalogue:
    """Read the catalogue file. Raises :class:`CatalogueError` only when the file as a whole
    cannot be read; a malformed entry lands in ``errors`` and the others load."""
    path = Path(path) if path else default_path()
    try:
        raw = _parse(text if text is not None else path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CatalogueError(f"{path}: cannot read: {e}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), dict):
        raise CatalogueError(f"{path}:1: expected a top-level 'datasets:' mapping")
    head = raw.get("catalogue") or {}
    if not isinstance(head, dict):
        raise CatalogueError(f"{path}:{getattr(raw, 'line_of', lambda k: 1)('catalogue')}: "
                             "catalogue: must be a mapping (title, description, publisher)")
    datasets, errors = [], []
    entries = raw["datasets"]
    for dataset_id, spec in entries.items():
        try:
            datasets.append(parse_dataset(dataset_id, spec if spec is not None else
                                          Lined({}, {}, entries.line_of(dataset_id)),
                                          entries.line_of(dataset_id)))
        except _Bad as bad:
            errors.append(EntryError(str(dataset_id), bad.line or entries.line_of(dataset_id),
                                     bad.message, str(path)))
    pub = head.get("publisher") or "AI Factory"
    if isinstance(pub, dict) and not isinstance(pub.get("name"), str):
        raise CatalogueError(f"{path}:{head.line_of('publisher')}: catalogue: publisher must "
                             "be a name or {name, url}")
    publisher = Publisher(pub["name"], str(pub.get("url") or "")) if isinstance(pub, dict) \
        else Publisher(str(pub))
    return Catalogue(tuple(datasets), tuple(errors),
                     str(head.get("title") or "AI Factory data catalogue"),
                     str(head.get("description") or "Datasets of the AI Factory's data spaces"),
                     publisher, path)
