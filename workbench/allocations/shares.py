"""Programmes' shares of the machine: reading a share (a percentage, or per GPU type a
percentage or GPU-hours) and checking the file's shares against the machine, and each
programme's reservation and grants against its share."""

from __future__ import annotations

import math
import re

from .model import Allocations, Share, machine_gpu_hours

#: ``c`` below is the loader's checker: ``c.fail(where, key, message)`` raises with file:line

_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$", re.ASCII)


def _percent(value) -> float | None:
    if isinstance(value, str) and (m := _PERCENT_RE.match(value)):
        return float(m.group(1))
    return None


def parse_share(c, pspec, pname: str, totals) -> Share:
    raw = pspec["share"]
    if isinstance(raw, str):
        pct = _percent(raw)
        if pct is None or pct > 100:
            c.fail(pspec, "share", f"programme {pname}: share {raw!r} must be a percentage "
                   "from 0% to 100%")
        return Share(percent=pct)
    if not isinstance(raw, dict) or not raw:
        c.fail(pspec, "share", f"programme {pname}: share must be a percentage of the machine "
               "(30%) or, per GPU type, a percentage or GPU-hours ({h100: 30%, a100: 5000})")
    per_type = {}
    for gpu_type, value in raw.items():
        if totals is not None and gpu_type not in totals:
            c.fail(raw, gpu_type, f"programme {pname}: share for GPU type {gpu_type!r}, which "
                   f"the cluster lacks (it has {', '.join(sorted(totals)) or 'no GPUs'})")
        pct = _percent(value)
        if pct is not None:
            if pct > 100:
                c.fail(raw, gpu_type, f"programme {pname}: share of {gpu_type} is {value}, "
                       "over 100%")
            per_type[gpu_type] = (pct, "%")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                0 <= value < math.inf:  # not .nan or .inf
            per_type[gpu_type] = (float(value), "h")
        else:
            c.fail(raw, gpu_type, f"programme {pname}: share of {gpu_type} must be a "
                   f"percentage (30%) or GPU-hours >= 0, not {value!r}")
    return Share(per_type=per_type)


def check_shares(c, allocs: Allocations, progs_raw, totals, grant_lines) -> None:
    """Shares within the machine; reservations and grants within their programme's share."""
    machine = machine_gpu_hours(totals, allocs.period)
    hours = allocs.period.hours
    summed: dict[str, float] = {}
    for prog in allocs.programmes:
        pspec = progs_raw[prog.name]
        if prog.share is None:
            if prog.reserves and any(p.share for p in allocs.programmes):
                c.fail(pspec, "reserved_gpus", f"programme {prog.name}: reserves GPUs but "
                       "has no share of the machine; give it a share")
            continue
        mine = prog.share.gpu_hours(machine)
        for gpu_type, value in mine.items():
            summed[gpu_type] = summed.get(gpu_type, 0.0) + value
            if summed[gpu_type] > machine.get(gpu_type, 0) + 1e-6:
                c.fail(pspec, "share", f"programme {prog.name}: the shares of {gpu_type} add "
                       f"up to {summed[gpu_type]:g} GPU-hours "
                       f"({_pct(summed[gpu_type], machine, gpu_type)}), "
                       f"more than the machine's {machine.get(gpu_type, 0):g} in "
                       f"{allocs.period.start}..{allocs.period.end}")
        for r in prog.reserves:
            needs = r.count * hours
            if needs > mine.get(r.gpu_type, 0) + 1e-6:
                c.fail(pspec, "reserved_gpus",
                       f"programme {prog.name}: reserving {r.count} {r.gpu_type} for the whole "
                       f"period takes {needs:g} GPU-hours, more than its {r.gpu_type} share of "
                       f"{mine.get(r.gpu_type, 0):g} ({prog.share.describe()}); at most "
                       f"{int(mine.get(r.gpu_type, 0) // hours)} fit")
        granted = 0.0
        total_share = sum(mine.values())
        for proj in prog.projects:
            if not allocs.period.overlaps(proj.valid_from, proj.valid_until):
                continue
            granted += proj.gpu_hours
            if granted > total_share + 1e-6:
                where, key = grant_lines[proj.name]
                c.fail(where, key, f"project {proj.name}: the grants of programme "
                       f"{prog.name} add up to {granted:g} GPU-hours, over its share of "
                       f"{total_share:g} GPU-hours ({prog.share.describe()})")


def _pct(value: float, machine, gpu_type: str) -> str:
    total = machine.get(gpu_type, 0)
    return f"{100 * value / total:.0f} %" if total else "of nothing"
