"""``DatasetPicker``: find and open a governed dataset, for ``af.DatasetPicker()``.

A view over :class:`~workbench.catalogue.client.CatalogueClient`, which works without it:
every search, licence acceptance and open is the client's (so the catalogue service decides,
and the file system enforces). Picking a dataset you may read opens it: the next cell reads
``picker.value.to_pandas()``.
"""

from __future__ import annotations

import html
import logging

import ipywidgets as w
from traitlets import Instance, Unicode, observe

from workbench.catalogue.client import CatalogueClient, CatalogueUnavailable, DatasetHandle
from workbench.catalogue.client import client as session_client

log = logging.getLogger(__name__)

ANY = "any"
_ERRORS = (PermissionError, LookupError, ValueError, CatalogueUnavailable)


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class DatasetPicker(w.VBox):
    """Search the catalogue, see a dataset's details and who may use it, accept its licence,
    open it.

    Traits: ``value`` (the opened :class:`DatasetHandle`, or None), ``selected`` (the id
    picked in the list), ``access`` (``allowed``, ``licence-required`` or ``refused`` for the
    picked dataset), ``status`` (the last message, refusals and errors included).
    Children you may drive from code: ``search`` (text), ``data_space``, ``licence``,
    ``fmt``, ``personal_data`` (filters), ``list`` (the results), ``accept`` (button),
    ``retry`` (button, shown while the catalogue service does not answer: searches again).
    """

    value = Instance(DatasetHandle, allow_none=True, help="The opened dataset")
    selected = Unicode("", help="Id of the dataset picked in the list")
    access = Unicode("", help="Your access to the picked dataset")
    status = Unicode("", help="The last message shown in the status line")

    def __init__(self, client: CatalogueClient | None = None, **kwargs):
        self.client = client or session_client()
        self._all: list[dict] = []
        self._quiet = False
        self.search = w.Text(placeholder="Search: words in title, description, keywords",
                             continuous_update=False, layout={"width": "100%"})
        wide = {"description_width": "initial"}
        self.data_space = w.Dropdown(description="Data space", options=[ANY], style=wide)
        self.licence = w.Dropdown(description="Licence", options=[ANY], style=wide)
        self.fmt = w.Dropdown(description="Format", options=[ANY], style=wide)
        self.personal_data = w.Dropdown(description="Personal data", style=wide,
                                        options=[ANY, "yes", "no"])
        self.list = w.Select(options=[], rows=8, layout={"width": "45%"})
        self.details = w.HTML(layout={"width": "55%"})
        self.licence_text = w.HTML()
        self.accept = w.Button(description="Accept licence and open", button_style="warning",
                               icon="check")
        self.licence_box = w.VBox([self.licence_text, self.accept],
                                  layout={"display": "none"})
        self.status_line = w.HTML()
        self.retry = w.Button(description="Try again", icon="refresh",
                              layout={"display": "none"})
        filters = w.HBox([self.data_space, self.licence, self.fmt, self.personal_data],
                         layout={"flex_flow": "row wrap"})
        super().__init__([w.HTML("<b>Datasets of the AI Factory</b>"), self.search, filters,
                          w.HBox([self.list, self.details]), self.licence_box,
                          w.HBox([self.status_line, self.retry])], **kwargs)
        self.add_class("wb-dataset-picker")
        self.list.add_class("wb-picker-list")
        self.accept.add_class("wb-picker-accept")
        self.retry.add_class("wb-picker-retry")
        for control in (self.search, self.data_space, self.licence, self.fmt,
                        self.personal_data):
            control.observe(self._refresh, names="value")
        self.list.observe(self._picked, names="value")
        self.accept.on_click(self._accept)
        self.retry.on_click(self._refresh)
        if self._load():
            self._show(self._all)

    # -- state ----------------------------------------------------------------------------

    @observe("status")
    def _show_status(self, change):
        self.status_line.value = f"<span class='wb-picker-status'>{html.escape(change.new)}" \
                                 "</span>"

    def _fail(self, e: Exception) -> None:
        self.status = str(e)
        # the service did not answer: the picker stays as it was, with a way to ask again
        self.retry.layout.display = "" if isinstance(e, CatalogueUnavailable) else "none"

    def _answered(self) -> None:
        self.retry.layout.display = "none"

    def _load(self) -> bool:
        """Every dataset, for the filters' choices; False (and why, in the status line) when
        the service did not answer: the next search tries again."""
        try:
            self._all = self.client.datasets()
        except _ERRORS as e:
            self._fail(e)
            return False
        self._answered()
        self.data_space.options = [ANY, *sorted({d["data_space"] for d in self._all
                                                 if d["data_space"]})]
        self.licence.options = [ANY, *sorted({d["licence_title"] for d in self._all})]
        self.fmt.options = [ANY, *sorted({f for d in self._all for f in d["formats"]})]
        return True

    def _filters(self) -> dict:
        f = {}
        if self.data_space.value != ANY:
            f["data_space"] = self.data_space.value
        if self.fmt.value != ANY:
            f["format"] = self.fmt.value
        if self.personal_data.value != ANY:
            f["personal_data"] = self.personal_data.value == "yes"
        if self.licence.value != ANY:
            uri = next((d["licence"] for d in self._all
                        if d["licence_title"] == self.licence.value), None)
            f["licence"] = uri or self.licence.value
        return f

    def _refresh(self, _change=None) -> None:
        if not self._all and not self._load():
            return
        try:
            answer = self.client.search(self.search.value.strip(), **self._filters())
        except _ERRORS as e:
            self._fail(e)
            return
        self._answered()
        found = answer["datasets"]
        self._show(found)
        self.status = f"{answer['count']} dataset(s)" + (
            f", the first {len(found)} shown: refine the search" if answer["count"] >
            len(found) else "")

    def _show(self, found: list[dict]) -> None:
        marks = {"allowed": "", "licence-required": " (licence)", "refused": " (no access)"}
        keep = self.list.value if any(d["id"] == self.list.value for d in found) else None
        self._quiet = True  # a new result list picks nothing by itself (no open unasked)
        try:
            self.list.options = [(f"{d['title']}{marks[d['access']['status']]}", d["id"])
                                 for d in found]
            if keep is None:
                self.list.index = None
            else:
                self.list.value = keep
        finally:
            self._quiet = False

    # -- picking, accepting, opening --------------------------------------------------------

    def _picked(self, change) -> None:
        if self._quiet:
            return
        dataset_id = change.new
        self.value = None
        self.licence_box.layout.display = "none"
        if not dataset_id:
            return
        self.selected = dataset_id
        try:
            d = self.client.dataset(dataset_id)
        except _ERRORS as e:
            self._fail(e)
            return
        self._answered()
        self.access = d["access"]["status"]
        self.details.value = self._details_html(d)
        if self.access == "allowed":
            self._open(dataset_id)
        elif self.access == "licence-required":
            self.licence_text.value = (
                f"<p>Its licence, <a href='{html.escape(d['licence'])}' target='_blank'>"
                f"{html.escape(d['licence_title'])}</a>, must be accepted first:</p>"
                "<pre class='wb-licence-text' style='white-space: pre-wrap; max-height: 20em; "
                f"overflow: auto'>{html.escape(d.get('licence_text', ''))}</pre>")
            self.licence_box.layout.display = "flex"
            self.status = f"{d['title']}: accept its licence to open it"
        else:
            self.status = f"You may not use {d['title']}: {d['access']['reason']}"

    def _accept(self, _button=None) -> None:
        if not self.selected:
            self.status = "Pick a dataset first"
            return
        try:
            answer = self.client.accept_licence(self.selected)
        except _ERRORS as e:
            self._fail(e)
            return
        self._answered()
        self.access = answer["access"]["status"]
        self.licence_box.layout.display = "none"
        if self.access == "allowed":
            self._open(self.selected)

    def _open(self, dataset_id: str) -> None:
        try:
            handle = self.client.open(dataset_id)
        except _ERRORS as e:
            self._fail(e)
            return
        self._answered()
        self.value = handle
        self.status = (f"Opened {dataset_id} for project {handle.project}: "
                       "df = picker.value.to_pandas()")

    @staticmethod
    def _details_html(d: dict) -> str:
        e = html.escape
        pub = d["publisher"]
        publisher = f"<a href='{e(pub['url'])}' target='_blank'>{e(pub['name'])}</a>" \
            if pub.get("url") else e(pub["name"])
        rows = [
            ("Publisher", publisher),
            ("Licence", f"<a href='{e(d['licence'])}' target='_blank'>"
                        f"{e(d['licence_title'])}</a>"),
            ("Data space", e(d["data_space"] or "-")),
            ("Size", e(_size(d.get("byte_size")))),
            ("Format", e(", ".join(d["formats"]))),
            ("Personal data", "yes" if d["personal_data"] else "no"),
            ("Who may use it", e(d["who_may_use"])),
            ("Your access", f"<span class='wb-access wb-access-{e(d['access']['status'])}'>"
                            f"{e(d['access']['status'])}</span>: {e(d['access']['reason'])}"),
        ]
        table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th>"
                        f"<td>{v}</td></tr>" for k, v in rows)
        return (f"<div class='wb-dataset-details'><h4>{e(d['title'])}</h4>"
                f"<p>{e(d['description'])}</p><table>{table}</table></div>")
