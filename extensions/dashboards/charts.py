"""Plotly charts of the dashboards, each a function of a table (readable on a laptop)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

HEIGHT = 340


def _layout(fig: go.Figure, title: str, y: str) -> go.Figure:
    fig.update_layout(title=title, height=HEIGHT, margin=dict(l=60, r=20, t=50, b=40),
                      yaxis_title=y, legend=dict(orientation="h", y=-0.2),
                      template="plotly_white")
    return fig


def budgets_bar(table: pd.DataFrame) -> go.Figure:
    """Granted against used GPU-hours per project."""
    fig = go.Figure([
        go.Bar(name="granted", x=table["project"], y=table["granted GPU-hours"]),
        go.Bar(name="used", x=table["project"], y=table["used GPU-hours"]),
    ])
    fig.update_layout(barmode="group")
    return _layout(fig, "GPU-hours per project: granted and used", "GPU-hours")


def burndown_lines(table: pd.DataFrame) -> go.Figure:
    """GPU-hours left per project by day, with the even burn of the grant dashed."""
    fig = go.Figure()
    for project, rows in table.groupby("project", sort=True):
        fig.add_trace(go.Scatter(x=rows["day"], y=rows["left GPU-hours"], name=project,
                                 mode="lines+markers"))
        if rows["ideal left"].notna().any():
            fig.add_trace(go.Scatter(x=rows["day"], y=rows["ideal left"],
                                     name=f"{project} (even burn)",
                                     line=dict(dash="dash"), mode="lines"))
    return _layout(fig, "Burn-down: GPU-hours left", "GPU-hours left")


def utilisation_lines(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for part, rows in table.groupby("partition", sort=True):
        fig.add_trace(go.Scatter(x=rows["time"], y=rows["utilisation %"], name=part,
                                 mode="lines"))
    fig.update_yaxes(range=[0, 100])
    return _layout(fig, "GPU utilisation per partition", "% of GPU-hours")


def waits_bars(table: pd.DataFrame) -> go.Figure:
    labels = table["programme"] + " / " + table["partition"]
    fig = go.Figure([
        go.Bar(name="median", x=labels, y=table["median wait (min)"]),
        go.Bar(name="90th percentile", x=labels, y=table["p90 wait (min)"]),
    ])
    fig.update_layout(barmode="group")
    return _layout(fig, "Queue wait per programme and partition", "minutes")
