"""How well a job used what it held, and how it ended, in plain words.

- CPU and memory come from accounting (:func:`workbench.slurm.queries.efficiency`), computed
  the way Slurm's ``seff`` does: CPU efficiency = ``TotalCPU`` / (``Elapsed`` x CPUs), peak
  memory = the largest ``MaxRSS`` of the job's steps, against the job's memory request.
- GPU utilisation and GPU memory come from ``nvidia-smi --query-gpu`` samples taken inside
  the job (:func:`sample_gpus`, every 30 s, JSON lines). Without samples (a node without
  NVIDIA GPUs, such as the local cluster's fake ones) the figures are None, "not measured":
  never a number made up from what was allocated.
- :func:`ended_how` says how a job ended for its owner or, with ``for_support``, for support.
- :func:`advice` gives at most one line where the figures are clear ("held 4 GPUs, used 1 at
  60 %: next time ask for 1").

Run ``python -m workbench.efficiency PATH [EVERY [GPU_IDS]]`` inside a job to sample its GPUs
into PATH until the job ends (SIGTERM); it writes nothing where there is no nvidia-smi.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from workbench.slurm.models import Job, JobState, JobUsage, LiveUsage

log = logging.getLogger(__name__)

#: the fields :func:`sample_gpus` asks nvidia-smi for, in this order
QUERY_GPU_FIELDS = "index,uuid,utilization.gpu,memory.used,memory.total"
#: a GPU whose mean utilisation stays under this (percent) counts as not used
IDLE_GPU_PCT = 5.0
#: advice on GPUs needs at least this many samples (5 minutes at one per 30 s)
MIN_GPU_SAMPLES = 10
#: advice on CPUs needs a job at least this long (seconds): a short one proves little
MIN_ADVICE_ELAPSED_S = 600
#: memory advice: the peak under this share of the request, and this much left unused
MEMORY_ADVICE_SHARE = 0.25
MEMORY_ADVICE_UNUSED_BYTES = 4 * 2**30
#: CPU advice: efficiency under this share, on more than one CPU
CPU_ADVICE_SHARE = 0.25
#: consecutive nvidia-smi failures after which sampling gives up
MAX_SAMPLE_FAILURES = 3


# -- GPU samples ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuReading:
    """One GPU in one ``nvidia-smi --query-gpu`` answer; None where it printed ``[N/A]`` or
    ``[Not Supported]``. Memory in MiB (``nounits``)."""

    index: int
    uuid: str
    util_pct: float | None
    mem_used_mib: int | None
    mem_total_mib: int | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_query_gpu(text: str) -> list[GpuReading]:
    """The output of ``nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used,
    memory.total --format=csv,noheader,nounits``: one line per GPU,
    ``0, GPU-5e1f..., 87, 30512, 81559``. Other lines (a header, a driver message) are
    skipped."""
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit():
            continue
        util, used, total = (_number(p) for p in parts[2:])
        out.append(GpuReading(int(parts[0]), parts[1], util,
                              None if used is None else int(used),
                              None if total is None else int(total)))
    return out


def split_samples(readings: Sequence[GpuReading]) -> list[list[GpuReading]]:
    """Readings of consecutive answers (``nvidia-smi ... -l 30`` prints one block per
    sample) to one list per sample: a sample ends where a GPU comes round again."""
    samples: list[list[GpuReading]] = []
    seen: set[str] = set()
    for r in readings:
        if not samples or r.uuid in seen:
            samples.append([])
            seen = set()
        samples[-1].append(r)
        seen.add(r.uuid)
    return samples


@dataclass(frozen=True)
class GpuFigures:
    """One GPU over a job's samples: mean utilisation (percent) and peak memory (MiB)."""

    index: int
    uuid: str
    samples: int
    mean_util_pct: float | None
    peak_mem_mib: int | None
    mem_total_mib: int | None

    @property
    def used(self) -> bool:
        return self.mean_util_pct is not None and self.mean_util_pct >= IDLE_GPU_PCT


def gpu_figures(samples: Iterable[Sequence[GpuReading]]) -> list[GpuFigures]:
    """Per GPU (by UUID, in index order): the mean of its utilisation readings and the
    largest memory reading. No samples: an empty list ("not measured")."""
    by_uuid: dict[str, list[GpuReading]] = {}
    for sample in samples:
        for r in sample:
            by_uuid.setdefault(r.uuid, []).append(r)
    out = []
    for uuid, rs in by_uuid.items():
        utils = [r.util_pct for r in rs if r.util_pct is not None]
        mems = [r.mem_used_mib for r in rs if r.mem_used_mib is not None]
        totals = [r.mem_total_mib for r in rs if r.mem_total_mib is not None]
        out.append(GpuFigures(rs[-1].index, uuid, len(rs),
                              sum(utils) / len(utils) if utils else None,
                              max(mems) if mems else None, max(totals) if totals else None))
    return sorted(out, key=lambda g: g.index)


def read_samples(path: str | Path) -> list[list[GpuReading]]:
    """The samples :func:`sample_gpus` wrote (one JSON line each); a missing or unreadable
    file gives no samples, a line cut short (the job was killed while writing) is skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:  # a home the reader may not read (root-squashed NFS): not measured
        log.warning("GPU samples %s not readable: %s", path, e)
        return []
    samples = []
    for line in lines:
        try:
            sample = [GpuReading(**g) for g in json.loads(line)["gpus"]]
        except (ValueError, KeyError, TypeError):
            continue
        samples.append(sample)
    return samples


def sample_gpus(path: str | Path, every: float = 30.0, stop: threading.Event | None = None,
                gpus: Sequence[str] = (), max_samples: int | None = None) -> int:
    """Append one JSON line per ``every`` seconds to ``path`` with each GPU's reading
    (``{"at": ISO time, "gpus": [GpuReading fields]}``), until ``stop`` is set,
    ``max_samples`` are written or nvidia-smi fails :data:`MAX_SAMPLE_FAILURES` times in a
    row. ``gpus``: the GPU ids to ask about (``nvidia-smi -i``), e.g. ``SLURM_JOB_GPUS``
    split on commas where the node does not confine a job to its own devices; empty: every
    GPU nvidia-smi sees. Without nvidia-smi on PATH nothing is written and 0 returned (the
    figures stay "not measured"). Returns the number of samples written."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        log.info("no nvidia-smi: GPU use of this job is not measured")
        return 0
    stop = stop or threading.Event()
    argv = [exe, f"--query-gpu={QUERY_GPU_FIELDS}", "--format=csv,noheader,nounits"]
    if gpus:
        argv += ["-i", ",".join(gpus)]
    written = failures = 0
    with open(path, "a", encoding="utf-8") as f:
        while max_samples is None or written < max_samples:
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, check=True,
                                      timeout=max(every, 10.0))
                readings = parse_query_gpu(proc.stdout)
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("nvidia-smi failed: %s", e)
                readings = []
            if readings:
                failures = 0
                f.write(json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "gpus": [asdict(r) for r in readings]}) + "\n")
                f.flush()
                written += 1
            else:
                failures += 1
                if failures >= MAX_SAMPLE_FAILURES:
                    log.warning("nvidia-smi gave no reading %d times: sampling stops", failures)
                    break
            if stop.wait(every):
                break
    return written


# -- how it ended --------------------------------------------------------------------------

def _exit_parts(exit_code: str) -> tuple[int, int]:
    code, _, sig = (exit_code or "0:0").partition(":")
    try:
        return int(code or 0), int(sig or 0)
    except ValueError:
        return 0, 0


def ended_how(state: JobState | str, exit_code: str = "", reason: str = "", *,
              for_support: bool = False, cancelled_by_owner: bool | None = None,
              culled_after_min: int | None = None, out_of_memory: bool = False) -> str:
    """How a job ended, in plain words, for its owner or (``for_support``) for support.

    ``state``/``exit_code``/``reason``: sacct's ``State`` (``CANCELLED by 1001`` is fine),
    ``ExitCode`` (``code:signal``) and ``Reason``. Who cancelled is not in the state alone:
    ``culled_after_min`` (the idle culler's timeout, when the caller knows the culler
    stopped it), ``cancelled_by_owner`` (True: the owner or the hub on their behalf; False:
    someone else, an operator or the workbench's clean-up, both as root; None: not known).
    ``out_of_memory``: a step was killed at its memory limit (:attr:`JobUsage.out_of_memory`)
    even where the job's own state says otherwise."""
    state = state if isinstance(state, JobState) else JobState.parse(state)
    code, sig = _exit_parts(exit_code)
    if state is JobState.OUT_OF_MEMORY or exit_code == "0:125" or out_of_memory:
        return ("out of memory (killed at its memory limit)" if for_support
                else "out of memory: ask for more next time")
    if state.is_pending:
        return "waiting in the queue"
    if state.is_running or state is JobState.SUSPENDED:
        return "still running"
    if state is JobState.COMPLETED:
        return "ended normally"
    if state is JobState.CANCELLED:
        if culled_after_min is not None:
            return f"idle-culled after {culled_after_min} min"
        if cancelled_by_owner is True:
            return "cancelled by its owner" if for_support else "stopped by you"
        if cancelled_by_owner is False:
            return ("cancelled by an operator or the workbench's clean-up" if for_support
                    else "cancelled by an operator")
        return "cancelled"
    if state is JobState.TIMEOUT:
        return "timed out (walltime reached)" if for_support else "walltime reached"
    if state is JobState.NODE_FAIL:
        return "node failure (NODE_FAIL)" if for_support else "node failure"
    if state is JobState.BOOT_FAIL:
        return "its node failed to boot"
    if state is JobState.DEADLINE:
        return "deadline reached"
    if state is JobState.PREEMPTED:
        return "preempted by a higher-priority job"
    if state is JobState.FAILED:
        if code:
            return f"failed with exit code {code}"
        if sig:
            return f"failed: killed by signal {sig}"
        why = f" ({reason})" if reason and reason != "None" else ""
        return f"failed{why}"
    return state.value.lower().replace("_", " ")


# -- the figures ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Efficiency:
    """A job's figures; None means "not measured" (no samples, no accounting yet, a running
    job whose CPU time accounting only adds up at the end).

    ``cpu_efficiency`` and ``memory_efficiency`` are shares (0.25 = 25 %); ``gpu_util_pct``
    the mean over the sampled GPUs, ``gpus_used`` how many of them were busy (mean at least
    :data:`IDLE_GPU_PCT`), ``gpu_peak_mem_mib`` the largest memory reading of any."""

    job_id: int
    ended: str
    elapsed_s: int
    cpus: int
    cpu_time_s: float
    cpu_efficiency: float | None
    peak_memory_bytes: int | None
    requested_memory_bytes: int | None
    memory_efficiency: float | None
    gpus_held: int
    gpus: tuple[GpuFigures, ...]
    gpu_util_pct: float | None
    gpus_used: int | None
    gpu_peak_mem_mib: int | None
    gpu_samples: int
    advice: str | None

    def as_json(self) -> dict:
        """A plain dict for an API answer (None stays null: "not measured")."""
        return asdict(self)


def cpu_efficiency(u: JobUsage) -> float | None:
    """seff's CPU efficiency: ``TotalCPU / (Elapsed x AllocCPUS)``; None while the job runs
    (sacct adds a step's CPU time when the step ends) or when nothing was allocated."""
    core_s = u.elapsed_s * u.cpus
    if not u.state.is_finished or core_s <= 0:
        return None
    return u.total_cpu_s / core_s


def _gb(n: float) -> str:
    value = n / 2**30
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return text.removesuffix(".0") + " GB"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def advice(e: Efficiency, oom: bool = False) -> str | None:
    """One line where the figures are clear, the costliest first: out of memory, idle GPUs,
    memory asked for and not used, CPUs asked for and not used. None otherwise."""
    if oom and e.requested_memory_bytes:
        return (f"it ran out of its {_gb(e.requested_memory_bytes)}: next time ask for "
                f"{_gb(2 * e.requested_memory_bytes)}")
    if e.gpus and e.gpu_samples >= MIN_GPU_SAMPLES and e.gpus_used is not None \
            and e.gpus_used < e.gpus_held:
        if e.gpus_used == 0:
            return (f"held {_plural(e.gpus_held, 'GPU')}, used none: next time ask for a "
                    "session without GPUs")
        busy = [g.mean_util_pct for g in e.gpus if g.used]
        return (f"held {_plural(e.gpus_held, 'GPU')}, used {e.gpus_used} at "
                f"{sum(busy) / len(busy):.0f} %: next time ask for {e.gpus_used}")
    peak, req = e.peak_memory_bytes, e.requested_memory_bytes
    if peak is not None and req and peak < MEMORY_ADVICE_SHARE * req \
            and req - peak >= MEMORY_ADVICE_UNUSED_BYTES:
        return f"peak memory {_gb(peak)} of {_gb(req)} requested"
    if e.cpu_efficiency is not None and e.cpus > 1 and e.elapsed_s >= MIN_ADVICE_ELAPSED_S \
            and e.cpu_efficiency < CPU_ADVICE_SHARE:
        busy = e.cpu_efficiency * e.cpus
        return (f"used {busy:.1f} of {e.cpus} CPUs on average: next time ask for "
                f"{max(1, math.ceil(busy))}")
    return None


def _figures(job_id: int, ended: str, elapsed_s: int, cpus: int, cpu_time_s: float,
             cpu_eff: float | None, peak: int | None, requested: int | None, gpus_held: int,
             samples: Iterable[Sequence[GpuReading]], oom: bool = False,
             advise: bool = True) -> Efficiency:
    gpus = tuple(gpu_figures(samples))
    utils = [g.mean_util_pct for g in gpus if g.mean_util_pct is not None]
    mems = [g.peak_mem_mib for g in gpus if g.peak_mem_mib is not None]
    e = Efficiency(
        job_id=job_id, ended=ended, elapsed_s=elapsed_s, cpus=cpus, cpu_time_s=cpu_time_s,
        cpu_efficiency=cpu_eff, peak_memory_bytes=peak, requested_memory_bytes=requested,
        # seff's memory efficiency: the steps' peak MaxRSS over the job's request
        memory_efficiency=peak / requested if peak is not None and requested else None,
        gpus_held=gpus_held, gpus=gpus,
        gpu_util_pct=sum(utils) / len(utils) if utils else None,
        gpus_used=sum(g.used for g in gpus) if utils else None,
        gpu_peak_mem_mib=max(mems) if mems else None,
        gpu_samples=max((g.samples for g in gpus), default=0), advice=None)
    line = advice(e, oom=oom) if advise else None
    return e if line is None else replace(e, advice=line)


def efficiency(u: JobUsage, samples: Iterable[Sequence[GpuReading]] = (), *,
               for_support: bool = False, cancelled_by_owner: bool | None = None,
               culled_after_min: int | None = None, owner_uid: int | None = None
               ) -> Efficiency:
    """The figures of one job from its accounting and its GPU samples (none: "not
    measured"); the keyword arguments go to :func:`ended_how`. ``owner_uid`` (the owner's
    uid) answers ``cancelled_by_owner`` where the caller does not and sacct named who
    cancelled (``CANCELLED by 1001``; Slurm 22.05 leaves it out on some cancels)."""
    if cancelled_by_owner is None and owner_uid is not None \
            and u.cancelled_by_uid is not None:
        cancelled_by_owner = u.cancelled_by_uid == owner_uid
    ended = ended_how(u.state, u.exit_code, u.reason, for_support=for_support,
                      cancelled_by_owner=cancelled_by_owner,
                      culled_after_min=culled_after_min, out_of_memory=u.out_of_memory)
    return _figures(u.job_id, ended, u.elapsed_s, u.cpus, u.total_cpu_s, cpu_efficiency(u),
                    u.max_rss_bytes, u.req_mem_bytes, u.gpus, samples, oom=u.out_of_memory)


def so_far(job: Job, live: LiveUsage | None, samples: Iterable[Sequence[GpuReading]] = (),
           now: datetime | None = None) -> Efficiency:
    """A running job's figures so far: CPU efficiency as seff computes it, but with the CPU
    time its running steps have used up to their last poll (``sstat``, :class:`LiveUsage`)
    over the time since it started; peak memory so far against the job's memory; GPUs from
    its samples so far. ``live`` None (sstat had nothing for it yet, or did not answer):
    CPU and memory "not measured". No advice before :data:`MIN_ADVICE_ELAPSED_S`: a session
    that has just started has used little of anything yet."""
    now = now or datetime.now(UTC)
    started = job.start_time if job.state.is_running else None
    elapsed = max(int((now - started).total_seconds()), 0) if started else 0
    cpu_time = live.cpu_time_s if live is not None else 0.0
    core_s = elapsed * job.cpus
    return _figures(job.job_id, ended_how(job.state), elapsed, job.cpus, cpu_time,
                    cpu_time / core_s if live is not None and core_s > 0 else None,
                    live.max_rss_bytes if live is not None else None, job.memory_bytes,
                    job.gpus, samples, advise=elapsed >= MIN_ADVICE_ELAPSED_S)


def short_figures(e: Efficiency | None) -> dict[str, str]:
    """CPU, memory and GPU figures in a few words each, for a table's cells (``"cpu"``:
    ``"85 % of 2 CPUs"``, ``"memory"``: ``"1.2 GB of 2 GB"``, ``"gpu"``: ``"1 of 4 busy,
    62 %"``); "not measured" where a figure is None, "" for GPUs a job does not hold."""
    if e is None:
        return {"cpu": "not measured", "memory": "not measured",
                "gpu": "not measured"}
    cpu = ("not measured" if e.cpu_efficiency is None
           else f"{100 * e.cpu_efficiency:.0f} % of {_plural(e.cpus, 'CPU')}")
    memory = "not measured" if e.peak_memory_bytes is None else _gb(e.peak_memory_bytes)
    if e.peak_memory_bytes is not None and e.requested_memory_bytes:
        memory += f" of {_gb(e.requested_memory_bytes)}"
    if not e.gpus_held:
        gpu = ""
    elif e.gpu_util_pct is None:
        gpu = "not measured"
    else:
        gpu = f"{e.gpus_used} of {e.gpus_held} busy, {e.gpu_util_pct:.0f} %"
    return {"cpu": cpu, "memory": memory, "gpu": gpu}


def _main(argv: Sequence[str]) -> int:
    """``python -m workbench.efficiency PATH [EVERY [GPU_IDS]]``: sample until SIGTERM or
    SIGINT; ``GPU_IDS`` as in ``SLURM_JOB_GPUS`` (``0,2``), empty: every GPU seen."""
    if not 1 <= len(argv) <= 3:
        print("usage: python -m workbench.efficiency PATH [EVERY_SECONDS [GPU_IDS]]",
              file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    every = float(argv[1]) if len(argv) > 1 else 30.0
    gpus = [g for g in argv[2].split(",") if g] if len(argv) > 2 else []
    sample_gpus(argv[0], every=every, stop=stop, gpus=gpus)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
