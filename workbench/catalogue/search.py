"""Searching the catalogue: words and filters over thousands of datasets.

One index per filter (theme, data space, licence, format, personal data) and the datasets'
search texts in a list, built once per catalogue (:attr:`Catalogue.index`), so a search over
10,000 datasets is a few set intersections and one pass over the texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class Searchable(Protocol):
    """What the index reads of a dataset (a :class:`~workbench.catalogue.model.Dataset`)."""

    @property
    def search_text(self) -> str: ...
    @property
    def theme(self) -> str: ...
    @property
    def data_space(self) -> str: ...
    @property
    def licence(self) -> str: ...
    @property
    def licence_title(self) -> str: ...
    @property
    def formats(self) -> Sequence[str]: ...
    @property
    def personal_data(self) -> bool: ...


class SearchIndex:
    """The datasets' search texts and one index per filter, built once per catalogue, so a
    search over 10,000 datasets is a few set intersections and one pass over the texts."""

    def __init__(self, datasets: Iterable[Searchable]):
        self.datasets = tuple(datasets)
        self.texts = [d.search_text for d in self.datasets]
        self.by: dict[str, dict] = {k: {} for k in ("theme", "data_space", "licence", "fmt",
                                                    "personal_data")}
        for i, d in enumerate(self.datasets):
            keys = {"theme": [d.theme], "data_space": [d.data_space],
                    "licence": {d.licence, d.licence_title}, "fmt": d.formats,
                    "personal_data": [d.personal_data]}
            for name, values in keys.items():
                for value in values:
                    self.by[name].setdefault(value, set()).add(i)

    def search(self, q: str = "", theme: str = "", licence: str = "", fmt: str = "",
               personal_data: bool | None = None, data_space: str = "") -> list[Searchable]:
        """The datasets matching every given filter, in catalogue order; ``q``: every word
        somewhere in the id, title, description, publisher, data space or keywords."""
        wanted = {"theme": theme.upper(), "data_space": data_space, "licence": licence,
                  "fmt": fmt.upper(), "personal_data": personal_data}
        chosen: set[int] | None = None
        for name, value in wanted.items():
            if value in ("", None):
                continue
            hits = self.by[name].get(value, set())
            chosen = hits if chosen is None else chosen & hits
        positions = range(len(self.datasets)) if chosen is None else sorted(chosen)
        texts = self.texts
        for word in q.lower().split():
            positions = [i for i in positions if word in texts[i]]
        return [self.datasets[i] for i in positions]


def search(datasets: Iterable[Searchable], q: str = "", **filters) -> list[Searchable]:
    """The datasets matching every given filter (see :meth:`SearchIndex.search`)."""
    return SearchIndex(datasets).search(q, **filters)
