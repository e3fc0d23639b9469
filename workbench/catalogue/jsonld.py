"""The catalogue as DCAT-AP (3.0) JSON-LD, which rdflib and any RDF parser read.

A plain ``dcat:``/``dct:`` prefix context (simpler than the official one, the same terms).
Each dataset carries ``dct:identifier``, ``dct:title``, ``dct:description``, ``dcat:theme``
(EU data-theme vocabulary), ``dct:publisher`` (a ``foaf:Agent``), ``dcat:keyword``,
``dct:accessRights`` (EU access-right vocabulary), ``dct:license`` on each distribution (a
``dct:LicenseDocument``), the personal-data flag (``dcatap:applicableLegislation`` GDPR, as
DCAT-AP 3 advises, and the workbench's own ``wb:personalData``), and distributions with
``dcat:accessURL`` (the service's dataset), ``dcat:mediaType``, ``dct:format``,
``dcat:byteSize`` and ``spdx:checksum`` (sha256). The location on the cluster's shared
storage (``dcat:downloadURL``, a ``file:`` URI) is given only for datasets the caller may read.
"""

from __future__ import annotations

import json
from pathlib import Path

from .model import Catalogue, Dataset

EU = "http://publications.europa.eu/resource/authority/"
CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "dcatap": "http://data.europa.eu/r5r/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "spdx": "http://spdx.org/rdf/terms#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "wb": "https://aifactory.example.eu/ns/workbench#",
}
GDPR = "http://data.europa.eu/eli/reg/2016/679/oj"
_RIGHTS = {"PUBLIC": "PUBLIC", "RESTRICTED": "RESTRICTED", "NON_PUBLIC": "NON_PUBLIC"}
_FILE_TYPES = {"PARQUET": "PARQUET", "CSV": "CSV", "JSON": "JSON"}


def _lit(text: str, lang: str = "en") -> dict:
    return {"@value": text, "@language": lang}


def dataset_node(d: Dataset, base: str, root: Path, readable: bool) -> dict:
    node = {
        "@id": f"{base}datasets/{d.id}",
        "@type": "dcat:Dataset",
        "dct:identifier": d.id,
        "dct:title": _lit(d.title),
        "dct:description": _lit(d.description),
        "dcat:theme": {"@id": f"{EU}data-theme/{d.theme}"},
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": d.publisher.name,
                          **({"foaf:homepage": {"@id": d.publisher.url}}
                             if d.publisher.url else {})},
        "dcat:keyword": [_lit(k) for k in d.keywords],
        "dct:accessRights": {"@id": f"{EU}access-right/{_RIGHTS[d.access_rights]}"},
        "wb:personalData": {"@value": d.personal_data, "@type": "xsd:boolean"},
        "wb:dataSpace": d.data_space,
        "wb:accessPolicy": d.access.describe(),
        "dcat:distribution": [],
    }
    if d.personal_data:
        node["dcatap:applicableLegislation"] = {"@id": GDPR}
    if d.issued:
        node["dct:issued"] = {"@value": d.issued, "@type": "xsd:date"}
    licence = {"@id": d.licence, "@type": "dct:LicenseDocument",
               **({"rdfs:label": d.licence_title} if d.licence_title else {})}
    for dist in d.distributions:
        dn = {
            "@id": f"{base}datasets/{d.id}#{dist.file}",
            "@type": "dcat:Distribution",
            "dct:title": _lit(dist.file),
            "dcat:accessURL": {"@id": f"{base}datasets/{d.id}"},
            "dct:format": {"@id": f"{EU}file-type/{_FILE_TYPES[dist.format]}"},
            "dcat:mediaType": {"@id": "http://www.iana.org/assignments/media-types/"
                               + dist.media_type},
            "dct:license": licence,
        }
        if dist.byte_size is not None:
            dn["dcat:byteSize"] = {"@value": str(dist.byte_size),
                                   "@type": "xsd:nonNegativeInteger"}
        if dist.checksum:
            dn["spdx:checksum"] = {
                "@type": "spdx:Checksum",
                "spdx:algorithm": {"@id": "http://spdx.org/rdf/terms#checksumAlgorithm_sha256"},
                "spdx:checksumValue": {"@value": dist.checksum, "@type": "xsd:hexBinary"}}
        if readable:
            dn["dcat:downloadURL"] = {"@id": (root / d.id / dist.file).as_uri()}
        node["dcat:distribution"].append(dn)
    return node


def catalogue_document(cat: Catalogue, base: str, root: Path,
                       readable: set[str] | frozenset[str] = frozenset()) -> dict:
    """The JSON-LD document: one ``dcat:Catalog`` holding every valid dataset.
    ``base``: the service's API URL (ends with '/'); ``readable``: ids whose storage location
    may be shown to this caller."""
    return {
        "@context": CONTEXT,
        "@id": f"{base}catalogue.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": _lit(cat.title),
        "dct:description": _lit(cat.description),
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": cat.publisher.name,
                          **({"foaf:homepage": {"@id": cat.publisher.url}}
                             if cat.publisher.url else {})},
        "dcat:dataset": [dataset_node(d, base, root, d.id in readable) for d in cat.datasets],
    }


def dumps(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
