"""Plotly charts of the dashboards, each a function of a table (readable on a laptop).

Each figure is plotly's JSON (a dict with ``data`` and ``layout``), shown as the dashboards'
chart mime type (:data:`.common.CHART_MIME`) and drawn by plotly.js (its basic bundle: bar
and scatter are all these use) in the browser. Built
as plain dicts: ``plotly.graph_objects`` costs a viewer's kernel ~0.5 s to import and ~1 s to
validate four figures with a template (measured under load 5-7), for the same JSON; the look of
``plotly_white`` is given by the few layout keys below instead of its 60 kB template."""

from __future__ import annotations

import math

import pandas as pd

HEIGHT = 340
GRID = "#EBF0F8"
#: plotly's default colour sequence
COLOURS = ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692",
           "#B6E880", "#FF97FF", "#FECB52"]


def _values(series) -> list:
    """A column as JSON: numbers (NaN as a gap), dates and times as ISO text, else text."""
    out = []
    for v in series.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
            out.append(None)
        elif hasattr(v, "isoformat"):
            out.append(v.isoformat())
        elif isinstance(v, (int, float, str)):
            out.append(v)
        else:
            out.append(str(v))
    return out


def _axis(**extra) -> dict:
    return {"gridcolor": GRID, "linecolor": GRID, "zerolinecolor": GRID, "automargin": True,
            **extra}


def _figure(traces: list[dict], title: str, y: str, **layout) -> dict:
    return {"data": traces, "layout": {
        "title": {"text": title, "x": 0.05}, "height": HEIGHT,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "legend": {"orientation": "h", "y": -0.2}, "colorway": COLOURS,
        "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
        "hovermode": "closest", "xaxis": _axis(),
        "yaxis": _axis(title={"text": y}, **layout.pop("yaxis", {})), **layout}}


def _bar(name: str, x, y) -> dict:
    return {"type": "bar", "name": name, "x": _values(x), "y": _values(y)}


def _line(name: str, x, y, mode: str = "lines", **extra) -> dict:
    return {"type": "scatter", "name": name, "x": _values(x), "y": _values(y), "mode": mode,
            **extra}


def budgets_bar(table: pd.DataFrame) -> dict:
    """Granted against used GPU-hours per project."""
    return _figure([_bar("granted", table["project"], table["granted GPU-hours"]),
                    _bar("used", table["project"], table["used GPU-hours"])],
                   "GPU-hours per project: granted and used", "GPU-hours", barmode="group")


def burndown_lines(table: pd.DataFrame) -> dict:
    """GPU-hours left per project by day, with the even burn of the grant dashed."""
    traces = []
    for project, rows in table.groupby("project", sort=True):
        traces.append(_line(project, rows["day"], rows["left GPU-hours"], "lines+markers"))
        if rows["ideal left"].notna().any():
            traces.append(_line(f"{project} (even burn)", rows["day"], rows["ideal left"],
                                line={"dash": "dash"}))
    return _figure(traces, "Burn-down: GPU-hours left", "GPU-hours left")


def utilisation_lines(table: pd.DataFrame) -> dict:
    traces = [_line(part, rows["time"], rows["utilisation %"])
              for part, rows in table.groupby("partition", sort=True)]
    # from 0, not fixed at 0-100: a value over 100 (capacity is today's nodes; a partition
    # that had more, or rows written into accounting by hand) is drawn, not cut off the top
    return _figure(traces, "GPU utilisation per partition", "% of GPU-hours",
                   yaxis={"rangemode": "tozero"})


def waits_bars(table: pd.DataFrame) -> dict:
    # two lines, not "a / b" on one: ten of those were set at an angle, into the legend
    labels = table["programme"] + "<br>" + table["partition"]
    return _figure([_bar("median", labels, table["median wait (min)"]),
                    _bar("90th percentile", labels, table["p90 wait (min)"])],
                   "Queue wait per programme and partition", "minutes", barmode="group")
