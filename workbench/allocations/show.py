"""``workbench allocations show`` in words: the machine, each programme's share, each project."""

from __future__ import annotations

from .budgets import MachineReport


def _types(counts) -> str:
    return ", ".join(f"{n:g} {t}" for t, n in sorted(counts.items())) or "-"


def format_report(rep: MachineReport) -> str:
    lines = []
    if rep.period:
        lines.append(f"The machine in {rep.period['start']}..{rep.period['end']} "
                     f"({rep.period['hours']} h):")
    else:
        lines.append("The machine (no allocation period in the file, so no shares):")
    for t, gpus in sorted(rep.gpus.items()):
        hours = rep.gpu_hours.get(t)
        lines.append(f"  {t:6} {gpus:3} GPUs" + (f" = {hours:,.0f} GPU-hours" if hours else ""))
    lines.append("")
    lines.append(f"{'programme':10} {'share':>8} {'share GPU-h':>12} {'granted':>9} "
                 f"{'of share':>8} {'used':>9}  {'reserved (in use)':18} {'may hold at once':16}")
    for p in rep.programmes:
        d = p.as_dict()
        total = d["share_gpu_hours_total"]
        ratio = d["granted_over_share"]
        reserved = ", ".join(f"{n} {t} ({d['reserved_gpus_in_use'].get(t, 0)})"
                             for t, n in sorted(d["reserved_gpus"].items())) or "-"
        lines.append(
            f"{p.programme:10} {p.share or '-':>8} "
            f"{f'{total:,.0f}' if total is not None else '-':>12} {p.granted_hours:9g} "
            f"{f'{100 * ratio:.1f} %' if ratio is not None else '-':>8} "
            f"{p.used_hours:9.2f}  {reserved:18} {_types(p.may_hold):16}")
    for p in rep.programmes:
        if p.kept_free_for:
            lines.append(f"  {p.programme}: holds at most {_types(p.may_hold)} at once, so the "
                         f"GPUs reserved for {' and '.join(p.kept_free_for)} stay free "
                         f"(now using {_types(p.running) if p.running else 'none'})")
    lines.append("")
    lines.append(f"{'programme':10} {'project':20} {'origin':10} {'granted':>9} {'used':>9} "
                 f"{'left':>9}  members")
    for b in rep.projects:
        note = "" if b.active else "  (outside its validity period)"
        lines.append(f"{b.programme:10} {b.project:20} {b.origin:10} {b.granted_hours:9g} "
                     f"{b.used_hours:9.2f} {b.remaining_hours:9.2f}  "
                     f"{', '.join(b.members) or '-'}{note}")
    lines.append("(origin: the allocations file, or an award of merit review; GPU-hours, from "
                 "Slurm accounting; shares of the machine's runtime in the "
                 "period; GPUs in use from the queue now)")
    return "\n".join(lines)
