"""A table that sorts, filters and downloads as CSV: one widget, used by both dashboards."""

from __future__ import annotations

import base64
import html

import ipywidgets as w
import pandas as pd
from traitlets import Any, Bool, Unicode, observe

#: rows drawn at most (the CSV holds every row)
MAX_ROWS = 200

#: the grid's look (Voila's page has no table styles of its own): columns apart, rows striped
#: headings and cells of several words wrap at their spaces when the window is narrower than
#: the table (a long text (:data:`LONG_TEXT`) keeps a few ems), one-word cells (names, nodes,
#: accounts) never, so the support sessions table fits a 1400 px window with nothing behind
#: a sideways scroll
GRID_CSS = ("<style>.wb-grid{border-collapse:collapse;font-size:0.9em}.wb-grid th,.wb-grid td"
            "{padding:3px 12px 3px 4px;text-align:left;vertical-align:top}.wb-grid td"
            "{white-space:nowrap}.wb-grid th{vertical-align:bottom;border-bottom:1px solid #ccc}"
            ".wb-grid .wb-words{white-space:normal}.wb-grid .wb-long{display:inline-block;"
            "white-space:normal;min-width:11em;max-width:18em}.wb-grid tbody "
            "tr:nth-child(odd){background:#f4f6f8}</style>")
#: characters from which a cell's text keeps a width of its own
LONG_TEXT = 40


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

    Few widgets, because each one costs the page a model and a view: the title, the row
    count and the CSV link are one HTML widget (``_head``), the message and the rows another
    (``_body``); the filter and sort controls are made when the viewer asks for them (the
    "Filter and sort" button, or :meth:`controls`).
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
        self._title_text = title
        self.links = dict(links or {})  # column -> link text: its values are URLs
        self.add_class("wb-table")
        self.add_class(f"wb-table-{name}")
        self._head = w.HTML()
        self._open = w.Button(description="Filter and sort", icon="filter")
        self._open.add_class("wb-open-controls")
        self._open.on_click(lambda _: self.controls())
        self._body = w.HTML()
        self._filter = self._sort = self._order = None
        self.children = [self._head, self._open, self._body]
        self._draw()

    def controls(self) -> w.HBox:
        """The filter box, the sort column and the order (made once, in place of the
        button)."""
        if self._filter is None:
            self._filter = w.Text(placeholder="filter rows", value=self.query,
                                  layout=w.Layout(width="16em"))
            self._sort = w.Dropdown(options=self._sort_options(), description="sort by",
                                    value=self.sort_by if self.sort_by in self._columns()
                                    else "", layout=w.Layout(width="18em"))
            self._order = w.ToggleButtons(options=[("↑", True), ("↓", False)],
                                          value=self.ascending,
                                          style={"button_width": "2.5em"})
            self._filter.observe(lambda c: setattr(self, "query", c["new"]), names="value")
            self._sort.observe(lambda c: setattr(self, "sort_by", c["new"] or ""),
                               names="value")
            self._order.observe(lambda c: setattr(self, "ascending", c["new"]), names="value")
            self._controls = w.HBox([self._filter, self._sort, self._order])
            self.children = [self._head, self._controls, self._body]
        return self._controls

    def _columns(self) -> list[str]:
        df = self.value if isinstance(self.value, pd.DataFrame) else None
        return [] if df is None else [str(c) for c in df.columns]

    def _sort_options(self) -> list[tuple[str, str]]:
        return [("(as given)", ""), *[(c, c) for c in self._columns()]]

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
        if self._sort is not None:
            options = self._sort_options()
            if list(self._sort.options) != options:
                self._sort.options = options
                self._sort.value = self.sort_by if self.sort_by in self._columns() else ""
        title = (f"<h3 class='wb-title'>{html.escape(self._title_text)}</h3>" if self._title_text
                 else "")
        note = (f"<div class='wb-message alert alert-warning'>{html.escape(self.message)}"
                "</div>" if self.message else "")
        if df is None:
            self._head.value, self._body.value = title, note
            return
        shown = self.shown
        total = len(df)
        self._head.value = (
            f"{title}<div class='wb-table-meta'>"
            f"<span class='wb-count'>{len(shown)} of {total} rows"
            f"{f', first {MAX_ROWS} drawn' if len(shown) > MAX_ROWS else ''}</span> "
            f"{csv_link(shown, f'{self.name}.csv')}</div>")
        if shown.empty:
            text = "No rows match the filter." if total else "Nothing to show."
            self._body.value = f"{note}<p class='wb-empty'>{text}</p>"
            return
        self._body.value = (
            f"{note}{GRID_CSS}<div style='max-height:28em;overflow:auto'>" +
            shown.head(MAX_ROWS).to_html(index=False, escape=False, na_rep="",
                                         formatters=self._formatters(shown.columns),
                                         classes="wb-grid table table-sm table-striped",
                                         border=0) + "</div>")

    def _formatters(self, columns) -> dict:
        """Every cell escaped; a link column's value (a URL) becomes a link."""
        def text(v):
            if v is None or (isinstance(v, float) and v != v):
                return ""
            raw = str(v)
            shown = html.escape(raw)
            if " " not in raw:
                return shown
            kind = "wb-long" if len(raw) > LONG_TEXT else "wb-words"
            return f"<span class='{kind}'>{shown}</span>"

        def link(label):
            return lambda v: (f"<a class='wb-link' href='{html.escape(str(v), quote=True)}'>"
                              f"{html.escape(label)}</a>") if v else ""
        return {c: link(self.links[c]) if c in self.links else text for c in columns}
