"""A table that sorts, filters and downloads as CSV: one widget, used by both dashboards."""

from __future__ import annotations

import base64
import html

import ipywidgets as w
import pandas as pd
from traitlets import Any, Bool, Unicode, observe

#: rows drawn at most (the CSV holds every row)
MAX_ROWS = 200


def csv_link(df: pd.DataFrame, filename: str, label: str = "Download CSV") -> str:
    """An HTML link that downloads ``df`` as ``filename`` (a data: URL, no server round trip)."""
    data = base64.b64encode(df.to_csv(index=False).encode()).decode()
    return (f'<a class="wb-csv" download="{html.escape(filename)}" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">{html.escape(label)}</a>')


class DataTable(w.VBox):
    """A DataFrame as a table.

    Traits: ``value`` (the DataFrame, or None), ``query`` (text every shown row contains,
    any column, case-insensitive), ``sort_by`` (a column, "" for the given order),
    ``ascending``, ``message`` (shown instead of an empty table), ``name`` (the CSV's file
    name without ``.csv``). ``shown`` is the filtered and sorted DataFrame.
    """

    value = Any(None, allow_none=True)
    query = Unicode("")
    sort_by = Unicode("")
    ascending = Bool(True)
    message = Unicode("")
    name = Unicode("table")

    def __init__(self, name: str, title: str = "", links: dict[str, str] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.name = name
        self.links = dict(links or {})  # column -> link text: its values are URLs
        self.add_class("wb-table")
        self.add_class(f"wb-table-{name}")
        self._title = w.HTML(f"<h3 class='wb-title'>{html.escape(title)}</h3>" if title else "")
        self._filter = w.Text(placeholder="filter rows", layout=w.Layout(width="16em"))
        self._sort = w.Dropdown(options=[("(as given)", "")], description="sort by",
                                layout=w.Layout(width="18em"))
        self._order = w.ToggleButtons(options=[("↑", True), ("↓", False)],
                                      style={"button_width": "2.5em"})
        self._csv = w.HTML()
        self._count = w.HTML()
        self._note = w.HTML()
        self._body = w.HTML()
        self._filter.observe(lambda c: setattr(self, "query", c["new"]), names="value")
        self._sort.observe(lambda c: setattr(self, "sort_by", c["new"] or ""), names="value")
        self._order.observe(lambda c: setattr(self, "ascending", c["new"]), names="value")
        self.children = [self._title,
                         w.HBox([self._filter, self._sort, self._order, self._csv,
                                 self._count]),
                         self._note, self._body]
        self._draw()

    def show(self, df: pd.DataFrame | None, message: str = "") -> None:
        """Set the table and its message together (drawn once)."""
        self._holding = True
        try:
            self.value = df
            self.message = message
        finally:
            self._holding = False
        self._draw()

    @property
    def shown(self) -> pd.DataFrame:
        df = self.value if isinstance(self.value, pd.DataFrame) else pd.DataFrame()
        if self.query.strip() and not df.empty:
            needle = self.query.strip().lower()
            mask = df.astype(str).apply(lambda col: col.str.lower().str.contains(
                needle, regex=False)).any(axis=1)
            df = df[mask]
        if self.sort_by and self.sort_by in df.columns:
            df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable")
        return df

    @observe("value", "query", "sort_by", "ascending", "message")
    def _changed(self, change):
        if not getattr(self, "_holding", False):
            self._draw()

    def _draw(self) -> None:
        df = self.value if isinstance(self.value, pd.DataFrame) else None
        columns = [] if df is None else [str(c) for c in df.columns]
        options = [("(as given)", ""), *[(c, c) for c in columns]]
        if list(self._sort.options) != options:
            self._sort.options = options
            self._sort.value = self.sort_by if self.sort_by in columns else ""
        self._note.value = (f"<div class='wb-message alert alert-warning'>"
                            f"{html.escape(self.message)}</div>" if self.message else "")
        if df is None:
            self._body.value, self._csv.value, self._count.value = "", "", ""
            return
        shown = self.shown
        self._csv.value = csv_link(shown, f"{self.name}.csv")
        total = len(df)
        self._count.value = (f"<span class='wb-count'>{len(shown)} of {total} rows"
                             f"{f', first {MAX_ROWS} drawn' if len(shown) > MAX_ROWS else ''}"
                             "</span>")
        if shown.empty:
            text = "No rows match the filter." if total else "Nothing to show."
            self._body.value = f"<p class='wb-empty'>{text}</p>"
            return
        self._body.value = (
            "<div style='max-height:28em;overflow:auto'>" +
            shown.head(MAX_ROWS).to_html(index=False, escape=False, na_rep="",
                                         formatters=self._formatters(shown.columns),
                                         classes="wb-grid table table-sm table-striped",
                                         border=0) + "</div>")

    def _formatters(self, columns) -> dict:
        """Every cell escaped; a link column's value (a URL) becomes a link."""
        def text(v):
            return "" if v is None or (isinstance(v, float) and v != v) else html.escape(str(v))

        def link(label):
            return lambda v: (f"<a class='wb-link' href='{html.escape(str(v), quote=True)}'>"
                              f"{html.escape(label)}</a>") if v else ""
        return {c: link(self.links[c]) if c in self.links else text for c in columns}
