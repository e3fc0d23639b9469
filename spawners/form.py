"""The spawn form: built from the live cluster (partitions, GPU types, the user's accounts)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import jinja2

from workbench.resources import ClusterView
from workbench.slurm.parse import format_duration
from workbench.waits import END_WORDS
from workbench.webinput import whole

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True, undefined=jinja2.StrictUndefined,
)

_INT_FIELDS = ("gpus", "cpus")


def render_form(view: ClusterView, current: Mapping, last_end: Mapping | None = None,
                presets: list[dict] = (), user: str = "") -> str:
    """HTML of the form; ``current`` (last or default options) preselects the fields;
    ``last_end`` (how the previous session ended) is shown above it; ``presets``: ``user``'s
    saved presets (:func:`spawners.presets.listing`), listed at the top, the last used one
    applied."""
    partitions = [
        {**offer.as_dict(),
         "max_time": format_duration(offer.max_time_min) if offer.max_time_min else "no limit"}
        for offer in view.partitions.values()
    ]
    offers = {p["name"]: p for p in partitions}
    budgets = {a: {"granted": b.granted_hours, "used": b.used_hours, "left": b.remaining_hours}
               for a, b in view.budgets.items()}
    data = json.dumps({"offers": offers, "budgets": budgets, "presets": list(presets),
                       "user": user}).replace("</", "<\\/")
    return _ENV.get_template("form.html.j2").render(
        partitions=partitions, accounts=view.accounts, current=dict(current),
        budgets=budgets, data_json=data, last_end=last_end, end_words=END_WORDS,
    )


def options_from_form(formdata: Mapping[str, list[str]], spawner=None) -> dict:
    """Form fields (lists of strings) to ``user_options`` of the spawn options contract.

    Numbers become ints when they are numbers; anything else is passed on as text so that
    validation names the field. Fields outside the contract are passed on too, and refused.
    The hidden field ``preset`` (the preset the choices came from, unchanged) is not an
    option: it is taken out and left on ``spawner.preset``, marked used once the request
    check passes.
    """
    options = {}
    preset = formdata.get("preset", [""])
    if spawner is not None:
        spawner.preset = (preset[0] if preset else "").strip() or None
    for key, values in formdata.items():
        if key == "preset":
            continue
        value = values[0] if len(values) == 1 else values
        number = whole(value.strip(), signed=True) if isinstance(value, str) else None
        if key in _INT_FIELDS and number is not None:
            value = number
        elif isinstance(value, str):
            value = value.strip()
        options[key] = value
    return options
