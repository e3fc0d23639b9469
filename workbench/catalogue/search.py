"""Searching the catalogue: words and filters over a hundred thousand datasets.

Built once per catalogue (:attr:`Catalogue.index`): one index per filter (theme, data space,
licence, format, personal data), each value's datasets in catalogue order, and a word index:
every distinct whitespace-separated token of the datasets' search texts with the datasets
that hold it. A query word (no whitespace in it) is a substring of a text exactly when it is a
substring of one of the text's tokens, so a word is looked up among the distinct tokens (one
``str.find`` pass over them joined), not among the texts; a search costs the size of its
answer and of the vocabulary, and a page is cut from the matches without building the rest.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Protocol

#: the separator of the joined vocabulary: whitespace, so no token or query word holds it
_SEP = "\n"
#: a word found in more distinct tokens than this (a digit, a letter) is looked for in the
#: texts, one pass: cheaper than gathering that many tokens' datasets one by one
MAX_TOKENS = 1000


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


class Hits:
    """The matches of one search: how many (``len``) and any page of them, in catalogue
    order, without building the datasets of the other pages."""

    def __init__(self, datasets: Sequence[Searchable], positions: Sequence[int]):
        self._datasets = datasets
        self._positions = positions  # ascending

    def __len__(self) -> int:
        return len(self._positions)

    def page(self, offset: int = 0, limit: int | None = None) -> list[Searchable]:
        cut = self._positions[offset:None if limit is None else offset + limit]
        return [self._datasets[i] for i in cut]


class SearchIndex:
    """The word index and one index per filter, built once per catalogue (see the module)."""

    def __init__(self, datasets: Iterable[Searchable]):
        self.datasets = tuple(datasets)
        self.texts = [d.search_text for d in self.datasets]
        self.by: dict[str, dict] = {k: {} for k in ("theme", "data_space", "licence", "fmt",
                                                    "personal_data")}
        postings: dict[str, list[int]] = {}
        for i, d in enumerate(self.datasets):
            keys = {"theme": [d.theme], "data_space": [d.data_space],
                    "licence": {d.licence, d.licence_title}, "fmt": d.formats,
                    "personal_data": [d.personal_data]}
            for name, values in keys.items():
                for value in values:
                    self.by[name].setdefault(value, []).append(i)
            for token in set(self.texts[i].split()):
                postings.setdefault(token, []).append(i)
        self._tokens = list(postings)
        self._postings = [postings[t] for t in self._tokens]
        self._starts, at = [], 0
        for token in self._tokens:
            self._starts.append(at)
            at += len(token) + len(_SEP)
        self._vocab = _SEP.join(self._tokens)

    def _containing(self, word: str) -> Sequence[int]:
        """The positions of the datasets whose search text holds ``word`` (no whitespace)."""
        vocab, starts, found = self._vocab, self._starts, []
        budget = len(self.datasets)  # past this many postings, one pass over the texts
        at = vocab.find(word)
        while at != -1:
            k = bisect_right(starts, at) - 1
            found.append(self._postings[k])
            budget -= len(found[-1])
            if budget < 0 or len(found) > MAX_TOKENS:
                return [i for i, text in enumerate(self.texts) if word in text]
            at = vocab.find(word, starts[k + 1]) if k + 1 < len(starts) else -1
        if len(found) == 1:
            return found[0]
        return sorted(set().union(*found))

    def find(self, q: str = "", theme: str = "", licence: str = "", fmt: str = "",
             personal_data: bool | None = None, data_space: str = "") -> Hits:
        """The datasets matching every given filter, in catalogue order; ``q``: every word
        somewhere in the id, title, description, publisher, data space or keywords."""
        wanted = {"theme": theme.upper(), "data_space": data_space, "licence": licence,
                  "fmt": fmt.upper(), "personal_data": personal_data}
        parts: list[Sequence[int]] = [self.by[name].get(value, ())
                                      for name, value in wanted.items()
                                      if value not in ("", None)]
        parts += [self._containing(word) for word in q.lower().split()]
        if not parts:
            return Hits(self.datasets, range(len(self.datasets)))
        parts.sort(key=len)
        if len(parts) == 1 or not parts[0]:
            return Hits(self.datasets, parts[0])
        chosen = set(parts[0])
        for part in parts[1:]:
            chosen.intersection_update(part)
            if not chosen:
                break
        return Hits(self.datasets, sorted(chosen))

    def search(self, q: str = "", **filters) -> list[Searchable]:
        """Every match of :meth:`find`, as a list."""
        return self.find(q, **filters).page()


def search(datasets: Iterable[Searchable], q: str = "", **filters) -> list[Searchable]:
    """The datasets matching every given filter (see :meth:`SearchIndex.find`)."""
    return SearchIndex(datasets).search(q, **filters)
