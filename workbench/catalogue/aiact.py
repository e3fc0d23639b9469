"""The AI Act training-data summary of a project, built from lineage.

It follows the structure of the European Commission's template for the public summary of
training content of general-purpose AI models (Art. 53(1)(d) AI Act): 1. general
information; 2. list of data sources (2.1 publicly available datasets, 2.2 private datasets
obtained from third parties, 2.3 data crawled from online sources, 2.4 user data, 2.5
synthetic data, 2.6 other sources); 3. data-processing aspects. Its facts are the datasets the
project's jobs opened through the catalogue (``dataset.opened`` in the audit trail), with each
one's publisher, licence, personal-data flag, size and first and last access; and it says what
it cannot know.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..audit import AuditLog
from .lineage import LICENCE_ACCEPTED, OPENED
from .model import Catalogue

TEMPLATE = ("European Commission, Template for the Public Summary of Training Content for "
            "general-purpose AI models (Article 53(1)(d) of Regulation (EU) 2024/1689)")

CANNOT_KNOW = [
    "Data read without the catalogue: files copied into home or project directories, "
    "downloaded from the internet, or read by path without `af.open_dataset` are not in the "
    "audit trail and are not listed here.",
    "Whether an opened dataset was used for training, and which part of it: an open is "
    "recorded, not the rows a model saw, nor filtering, sampling or augmentation done in the "
    "user's code.",
    "Which model, version or checkpoint the data went into: the workbench knows jobs and "
    "projects, not models.",
    "Data opened in jobs charged to another project, or outside any Slurm job without naming "
    "this project.",
    "Opens before the audit trail existed or records removed from it.",
]


@dataclass
class SourceEntry:
    id: str
    title: str
    publisher: str
    publisher_url: str
    licence: str
    licence_title: str
    personal_data: bool
    byte_size: int | None
    rows: int | None
    source: str
    data_space: str
    first_access: str
    last_access: str
    opens: int
    jobs: list[int] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    licence_accepted_by: list[str] = field(default_factory=list)
    in_catalogue: bool = True


@dataclass
class Summary:
    project: str
    programme: str
    job: int | None
    generated: str
    template: str
    general: dict
    sources: dict[str, list[SourceEntry]]
    processing: dict
    cannot_know: list[str]

    def as_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    @property
    def datasets(self) -> list[str]:
        return [e.id for entries in self.sources.values() for e in entries]


def _file_facts(root: Path, d) -> tuple[int | None, int | None]:
    """Bytes and rows of a dataset's files on the storage (None when unreadable)."""
    total, rows = 0, 0
    try:
        import pyarrow.parquet as pq

        for dist in d.distributions:
            path = root / d.id / dist.file
            total += path.stat().st_size
            if dist.format == "PARQUET":
                rows += pq.read_metadata(path).num_rows
    except OSError:
        return None, None
    return total, rows


def build(project: str, programme: str, audit: AuditLog, catalogue: Catalogue, root: Path,
          job: int | None = None) -> Summary:
    """The summary of what ``project``'s jobs (or one ``job``) opened."""
    opened: dict[str, list] = {}
    for r in audit.records(OPENED, limit=None):
        if r.details.get("project") != project:
            continue
        if job is not None and r.details.get("job_id") != job:
            continue
        opened.setdefault(r.subject, []).append(r)
    accepted: dict[str, set[str]] = {}
    for r in audit.records(LICENCE_ACCEPTED, limit=None):
        if r.subject in opened:
            accepted.setdefault(r.subject, set()).add(r.actor)
    sources: dict[str, list[SourceEntry]] = {k: [] for k in (
        "publicly_available_datasets", "private_third_party_datasets", "crawled_online_sources",
        "user_data", "synthetic_data", "other_sources")}
    bucket = {"public": "publicly_available_datasets",
              "third-party": "private_third_party_datasets", "other": "other_sources"}
    for dataset_id, recs in sorted(opened.items()):
        d = catalogue.get(dataset_id)
        users = sorted({r.actor for r in recs})
        jobs = sorted({r.details["job_id"] for r in recs if r.details.get("job_id")})
        if d is None:  # opened once, since removed from the catalogue
            entry = SourceEntry(dataset_id, "(no longer in the catalogue)", "unknown", "",
                                "unknown", "unknown", False, None, None, "other", "",
                                recs[0].at, recs[-1].at, len(recs), jobs, users,
                                sorted(accepted.get(dataset_id, ())), in_catalogue=False)
            sources["other_sources"].append(entry)
            continue
        size, rows = _file_facts(root, d)
        entry = SourceEntry(
            d.id, d.title, d.publisher.name, d.publisher.url, d.licence,
            d.licence_title or d.licence, d.personal_data, size, rows, d.source, d.data_space,
            recs[0].at, recs[-1].at, len(recs), jobs, users,
            sorted(accepted.get(dataset_id, ())))
        sources[bucket[d.source]].append(entry)
    entries = [e for v in sources.values() for e in v]
    total = sum(e.byte_size or 0 for e in entries)
    general = {
        "provider": f"project {project} (programme {programme}) of the AI Factory",
        "model": "not known to the workbench (see 'what this summary cannot know')",
        "scope": f"Slurm job {job}" if job is not None else f"every job of project {project}",
        "modalities": sorted({"tabular"} if entries else set()),
        "datasets": len(entries),
        "total_bytes": total,
        "total_rows": sum(e.rows or 0 for e in entries),
        "period": ({"first_access": min(e.first_access for e in entries),
                    "last_access": max(e.last_access for e in entries)} if entries else None),
        "personal_data": any(e.personal_data for e in entries),
    }
    personal = [e for e in entries if e.personal_data]
    processing = {
        "access_control": "Every dataset was read from the AI Factory's shared storage under "
                          "its catalogue licence and access rules, enforced by the file "
                          "system (a Unix group per project; licence-gated data by an ACL "
                          "granted on acceptance).",
        "licences": sorted({f"{e.licence_title} <{e.licence}>" for e in entries}),
        "licence_acceptances": {e.id: e.licence_accepted_by for e in entries
                                if e.licence_accepted_by},
        "personal_data": [f"{e.id}: {e.title} (publisher {e.publisher}); licence accepted by "
                          f"{', '.join(e.licence_accepted_by) or 'nobody recorded'}"
                          for e in personal],
        "rights_reservations": "No data was crawled by the workbench; text-and-data-mining "
                               "opt-outs of online sources do not apply to catalogue datasets, "
                               "which come under the licences listed.",
        "illegal_content_removal": "Not recorded by the workbench.",
    }
    return Summary(project, programme, job, datetime.now(UTC).isoformat(timespec="seconds"),
                   TEMPLATE, general, sources, processing, list(CANNOT_KNOW))


def _size(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 1e6:.1f} MB"


def markdown(s: Summary) -> str:
    """The summary in the template's order, as Markdown."""
    g = s.general
    lines = [
        f"# Training-data summary: project {s.project}",
        "",
        f"Structure: {s.template}. Generated {s.generated} by the AI Factory Workbench from "
        f"the audit trail ({g['scope']}).",
        "",
        "## 1. General information",
        "",
        f"- Provider: {g['provider']}",
        f"- Model: {g['model']}",
        f"- Modalities: {', '.join(g['modalities']) or 'none recorded'}",
        f"- Datasets: {g['datasets']}; size {_size(g['total_bytes'])}, "
        f"{g['total_rows']:,} rows",
        "- Period of access: " + (f"{g['period']['first_access']} to "
                                   f"{g['period']['last_access']}" if g["period"] else "none"),
        f"- Personal data among the sources: {'yes' if g['personal_data'] else 'no'}",
        "",
        "## 2. List of data sources",
    ]
    titles = {"publicly_available_datasets": "2.1 Publicly available datasets",
              "private_third_party_datasets": "2.2 Private datasets obtained from third "
                                              "parties",
              "crawled_online_sources": "2.3 Data crawled and scraped from online sources",
              "user_data": "2.4 User data",
              "synthetic_data": "2.5 Synthetic data",
              "other_sources": "2.6 Other sources of data"}
    for key, title in titles.items():
        lines += ["", f"### {title}", ""]
        entries = s.sources[key]
        if not entries:
            lines.append("None recorded through the catalogue.")
            continue
        lines += ["| dataset | publisher | licence | personal data | size | rows | "
                  "first access | last access | opens (jobs) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in entries:
            lines.append(
                f"| {e.title} (`{e.id}`) | {e.publisher} | [{e.licence_title}]({e.licence}) | "
                f"{'yes' if e.personal_data else 'no'} | {_size(e.byte_size)} | "
                f"{e.rows if e.rows is not None else 'unknown'} | {e.first_access} | "
                f"{e.last_access} | {e.opens} ({', '.join(map(str, e.jobs)) or '-'}) |")
    p = s.processing
    lines += ["", "## 3. Data processing aspects", "",
              f"- Access: {p['access_control']}",
              f"- Licences: {'; '.join(p['licences']) or 'none'}",
              "- Personal data: " + ("; ".join(p["personal_data"]) or "none"),
              f"- Rights reservations (TDM opt-out): {p['rights_reservations']}",
              f"- Removal of illegal content: {p['illegal_content_removal']}",
              "", "## What this summary cannot know", ""]
    lines += [f"- {c}" for c in s.cannot_know]
    return "\n".join(lines) + "\n"
