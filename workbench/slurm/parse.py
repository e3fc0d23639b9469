"""Parsers of Slurm's output into :mod:`workbench.slurm.models` (22.05 OpenAPI v0.0.38 JSON,
``scontrol -o`` key=value lines, ``sacctmgr -nP`` rows)."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime

from .models import (
    AccountedJob,
    Association,
    GpuUse,
    Job,
    JobState,
    JobUsage,
    LiveUsage,
    Node,
    Partition,
    StepUsage,
)

_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_duration_min(text: str) -> int | None:
    """Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) to whole minutes.

    ``UNLIMITED``/``INFINITE`` give None. Seconds round up. Raises ValueError otherwise.
    """
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", "N/A", ""):
        return None
    m = _TIME_RE.match(text)
    if not m:
        raise ValueError(f"not a Slurm time: {text!r}")
    days, a, b, c = m.groups()
    if days is not None:
        # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif c is not None:
        total = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:
        total = int(a) * 60 + int(b)
    else:
        total = int(a) * 60
    return -(-total // 60)


def format_duration(minutes: int) -> str:
    """Minutes to Slurm's ``D-HH:MM:SS`` (``HH:MM:SS`` under a day)."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    hms = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{hms}" if days else hms


def _ts(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


class SlurmReportedErrors(ValueError):
    """A ``--json`` answer that carries an ``errors`` array: the command exited 0 but Slurm
    could not do it (``squeue``/``sinfo`` with the controller down: ``slurm_load_jobs``).
    The client turns it into :class:`~workbench.slurm.client.SlurmUnavailable`."""

    def __init__(self, errors: list):
        self.errors = errors
        super().__init__(f"Slurm reported errors: {errors}")


def _json(text: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"Slurm did not answer JSON: {text[:200]!r}") from e
    errors = data.get("errors") or []
    if errors:
        raise SlurmReportedErrors(errors)
    return data


def parse_gres(text: str) -> tuple[str, int]:
    """``gpu:h100:4``, ``gres:gpu:h100:2``, ``gpu:2(IDX:0-1)`` → (type, count) of GPUs."""
    for item in (text or "").split(","):
        item = re.sub(r"\(.*?\)", "", item.strip())
        parts = item.split(":")
        if parts and parts[0] == "gres":
            parts = parts[1:]
        if not parts or parts[0] != "gpu":
            continue
        if len(parts) == 2 and parts[1].isdigit():
            return "", int(parts[1])
        if len(parts) >= 3 and parts[2].isdigit():
            return parts[1], int(parts[2])
    return "", 0


def parse_gres_indices(details: list[str]) -> tuple[int, ...]:
    """``["gpu:a100:2(IDX:0,2-3)"]`` (squeue's gres_detail) to (0, 2, 3)."""
    out: list[int] = []
    for item in details:
        m = re.search(r"IDX:([0-9,-]+)", item)
        if not m:
            continue
        for part in m.group(1).split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _tres_memory(tres: str) -> int | None:
    """The ``mem=`` of a TRES string (``cpu=2,mem=2G,node=1``) in bytes; None without one."""
    for item in tres.split(","):
        key, sep, value = item.partition("=")
        if sep and key == "mem":
            try:
                return parse_size_bytes(value, default_unit="M")
            except ValueError:
                return None
    return None


def parse_jobs(text: str) -> list[Job]:
    """``squeue --json`` to jobs (22.05 ignores squeue's filters with --json: filter here)."""
    jobs = []
    for j in _json(text).get("jobs", []):
        gpu_type, gpus = parse_gres(j.get("tres_per_node") or j.get("tres_per_job") or "")
        exit_code = j.get("exit_code")
        jobs.append(Job(
            job_id=int(j["job_id"]),
            name=j.get("name", ""),
            user=j.get("user_name", ""),
            account=j.get("account", ""),
            partition=j.get("partition", ""),
            state=JobState.parse(j.get("job_state", "")),
            reason=j.get("state_reason", "") or "",
            nodes=j.get("nodes", "") or "",
            batch_host=j.get("batch_host", "") or "",
            comment=j.get("comment", "") or "",
            gpus=gpus,
            gpu_type=gpu_type,
            cpus=int(j.get("cpus") or 0),
            time_limit_min=j.get("time_limit"),
            submit_time=_ts(j.get("submit_time")),
            start_time=_ts(j.get("start_time")),
            end_time=_ts(j.get("end_time")),
            exit_code=exit_code if isinstance(exit_code, int) else None,
            priority=int(j.get("priority") or 0),
            gpu_indices=parse_gres_indices(j.get("gres_detail") or []),
            memory_bytes=_tres_memory(j.get("tres_alloc_str") or j.get("tres_req_str") or ""),
        ))
    return jobs


def parse_nodes(text: str) -> list[Node]:
    """``sinfo --json`` to nodes."""
    nodes = []
    for n in _json(text).get("nodes", []):
        gpu_type, gpus = parse_gres(n.get("gres", ""))
        _, used = parse_gres(n.get("gres_used", ""))
        nodes.append(Node(
            name=n["name"],
            address=n.get("address") or n["name"],
            state=(n.get("state") or "unknown").lower(),
            flags=tuple(f.upper() for f in n.get("state_flags") or ()),
            partitions=tuple(n.get("partitions") or ()),
            cpus=int(n.get("cpus") or 0),
            idle_cpus=int(n.get("idle_cpus") or 0),
            memory_mb=int(n.get("real_memory") or 0),
            alloc_memory_mb=int(n.get("alloc_memory") or 0),
            gpu_type=gpu_type,
            gpus=gpus,
            gpus_used=used,
            reason=n.get("reason", "") or "",
        ))
    return nodes


def parse_cluster_name(text: str) -> str:
    """``ClusterName = x`` from ``scontrol show config``."""
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ClusterName" and value.strip():
            return value.strip()
    raise ValueError("scontrol show config names no ClusterName")


def parse_key_values(line: str) -> dict[str, str]:
    """One ``scontrol show ... -o`` line to a dict. A line without quotes or backslashes
    (nearly all) is split on whitespace, as shlex would split it but ~20 times faster: a
    spawn reads ~10 kB of ``assoc_mgr`` lines on the hub's event loop."""
    out = {}
    plain = not any(c in line for c in "\"'\\")
    for token in line.split() if plain else shlex.split(line):
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


def parse_partitions(text: str, nodes: list[Node] | None = None) -> list[Partition]:
    """``scontrol show partition -o`` to partitions.

    ``nodes`` (from :func:`parse_nodes`) gives each partition's node names expanded; without
    them the hostlist expression is kept as a single entry.
    """
    parts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        kv = parse_key_values(line)
        name = kv["PartitionName"]
        if nodes is not None:
            members = tuple(n.name for n in nodes if name in n.partitions)
        else:
            members = (kv.get("Nodes", ""),)
        parts.append(Partition(
            name=name,
            nodes=members,
            max_time_min=parse_duration_min(kv.get("MaxTime", "UNLIMITED")),
            default_time_min=parse_duration_min(kv.get("DefaultTime", "NONE")),
            default=kv.get("Default") == "YES",
            state=kv.get("State", "UP"),
            allow_accounts=kv.get("AllowAccounts", "ALL"),
            billing_weights=parse_billing_weights(kv.get("TRESBillingWeights", "")),
        ))
    return parts


def parse_billing_weights(text: str) -> dict[str, float]:
    """``TRESBillingWeights`` (``GRES/gpu=1.0,CPU=0.5G``) to ``{"gres/gpu": 1.0, "cpu": 0.5}``
    (keys lower case, unit suffixes dropped)."""
    out = {}
    for item in (text or "").split(","):
        key, _, value = item.partition("=")
        try:
            out[key.strip().lower()] = float(value.rstrip("KMGTP"))
        except ValueError:
            continue
    return out


def parse_rows(text: str) -> list[list[str]]:
    """``sacctmgr -nP`` / ``sacct -nP`` output to rows of fields."""
    return [line.split("|") for line in text.splitlines() if line.strip()]


def parse_tres(text: str) -> dict[str, int]:
    """``gres/gpu=600,cpu=10`` to a dict."""
    out = {}
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep and value.lstrip("-").isdigit():
            out[key] = int(value)
    return out


def parse_associations(text: str) -> list[Association]:
    """Rows of ``sacctmgr -nP show assoc format=Account,User,ParentName,GrpTRESMins`` and
    optionally ``,QOS,DefaultQOS,GrpTRES`` (:func:`~workbench.slurm.queries.account_tree`)."""
    out = []
    for r in parse_rows(text):
        r = r + [""] * (7 - len(r))
        out.append(Association(account=r[0], user=r[1], parent=r[2],
                               grp_tres_mins=parse_tres(r[3]), qos=r[4], default_qos=r[5],
                               grp_tres=parse_tres(r[6])))
    return out


def parse_assoc_mgr(text: str) -> list[Association]:
    """``scontrol -o show assoc_mgr flags=assoc`` (the controller's own association cache) to
    the *user* associations in it; accounts' own rows have an empty ``UserName``."""
    out = []
    for line in text.splitlines():
        if not line.startswith("ClusterName=") or " UserName= " in line:
            continue  # not an association, or an account's own row
        kv = parse_key_values(line)
        user = kv.get("UserName", "").split("(")[0]
        if user:
            out.append(Association(account=kv["Account"], user=user))
    return out


def parse_job_id(text: str) -> int:
    """``sbatch --parsable`` output (``123`` or ``123;cluster``) to the job id."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    head = last.split(";")[0]
    if not head.isdigit():
        raise ValueError(f"sbatch gave no job id: {text.strip()!r}")
    return int(head)


def parse_job_end(text: str) -> tuple[JobState, str] | None:
    """``sacct -nP -X --format=State,ExitCode`` to (state, exit code) of the job."""
    rows = parse_rows(text)
    if not rows:
        return None
    return JobState.parse(rows[0][0]), rows[0][1] if len(rows[0]) > 1 else ""


def parse_gpu_use(text: str) -> list[GpuUse]:
    """``sacct -nP -X --format=JobID,Account,User,AllocTRES,ElapsedRaw,Start`` to GPU use."""
    out = []
    for row in parse_rows(text):
        if len(row) < 6 or not row[0].split("_")[0].isdigit():
            continue
        gpus = parse_tres(row[3]).get("gres/gpu", 0)
        start = None
        if row[5] and row[5] not in ("Unknown", "None"):
            start = datetime.fromisoformat(row[5])
        elapsed = int(row[4]) if row[4].isdigit() else 0
        out.append(GpuUse(int(row[0].split("_")[0]), row[1], row[2], gpus, elapsed, start))
    return out


def parse_share_usage(text: str) -> dict[str, int]:
    """The account's own row of ``sshare -nP -o Account,User,GrpTRESRaw``."""
    for row in parse_rows(text):
        if len(row) >= 3 and row[1] == "":
            return parse_tres(row[2])
    return {}


def parse_gpus(tres: str) -> tuple[int, str]:
    """GPUs in a TRES string and their type: ``gres/gpu:h100=2,gres/gpu=2`` → (2, "h100"); a
    mix of types → "a100+h100"; untyped GPUs → (n, "")."""
    values = parse_tres(tres)
    typed = [(k.split(":", 1)[1], n) for k, n in values.items() if k.startswith("gres/gpu:")]
    if typed:
        return sum(n for _, n in typed), "+".join(sorted(t for t, _ in typed))
    return values.get("gres/gpu", 0), ""


def _utc(text: str) -> datetime | None:
    """A time ``sacct`` printed with ``TZ=UTC`` (``2026-11-24T08:30:00``), or None."""
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_accounted_jobs(text: str) -> list[AccountedJob]:
    """Rows of :func:`~workbench.slurm.queries.history` (``sacct -nP`` with
    ``HISTORY_FIELDS``, in UTC); lines that are not job rows (warnings) are skipped."""
    rows = []
    for r in parse_rows(text):
        if len(r) != 15 or not r[0].isdigit():
            continue
        gpus, gpu_type = parse_gpus(r[13])
        rows.append(AccountedJob(
            int(r[0]), r[1], r[2], r[3], r[4], r[5], (r[6].split() or [""])[0], r[7], r[8],
            _utc(r[9]), _utc(r[10]), _utc(r[11]), int(r[12]) if r[12].isdigit() else 0,
            gpus, gpu_type, r[14]))
    return rows


_CPU_TIME_RE = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")


def parse_cpu_time(text: str) -> float:
    """sacct's ``TotalCPU``/``UserCPU`` to seconds: ``MM:SS.mmm`` (``00:08.136``),
    ``HH:MM:SS[.mmm]`` (``01:02:03.456``), ``D-HH:MM:SS`` (``1-00:00:00``); empty: 0.
    Raises ValueError otherwise."""
    text = text.strip()
    if not text:
        return 0.0
    m = _CPU_TIME_RE.match(text)
    if not m:
        raise ValueError(f"not a Slurm CPU time: {text!r}")
    days, hours, minutes, seconds = m.groups()
    if days is not None and hours is None:  # D-HH:MM:SS has three parts after the day
        raise ValueError(f"not a Slurm CPU time: {text!r}")
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60
            + float(seconds))


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def parse_size_bytes(text: str, default_unit: str = "") -> int | None:
    """A size sacct printed (``4720K``, ``3.5G``, ``0``; units of 1024) to bytes; a bare
    number is in ``default_unit`` (``""``: bytes, as ``MaxRSS`` prints; ``"M"`` for memory
    requests). Empty: None. Raises ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a Slurm size: {text!r}")
    unit = (m.group(2) or default_unit).upper()
    return round(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_req_mem(text: str, cpus: int, nodes: int) -> int | None:
    """sacct's ``ReqMem`` to the bytes of the whole job. Slurm 21.08 and later print the job's
    total (``4G`` for ``--mem=2G`` on two nodes); older ones a per-node (``2Gn``) or per-CPU
    (``4000Mc``) request, multiplied here by the nodes or CPUs. Empty: None."""
    text = text.strip()
    per = ""
    if text[-1:] in ("n", "c"):
        text, per = text[:-1], text[-1]
    value = parse_size_bytes(text, default_unit="M")
    if value is None:
        return None
    if per == "c":
        return value * max(cpus, 1)
    if per == "n":
        return value * max(nodes, 1)
    return value


def _int(text: str) -> int:
    return int(text) if text.strip().isdigit() else 0


def parse_job_usage(text: str) -> list[JobUsage]:
    """Rows of :func:`~workbench.slurm.queries.efficiency` (``sacct -nP`` with
    ``EFFICIENCY_FIELDS``, steps included, in UTC) to one :class:`JobUsage` per job
    allocation with its steps, in the order sacct gave them; other lines (warnings, steps
    whose job is not in the answer) are skipped."""
    jobs: dict[str, dict] = {}
    steps: dict[str, list[StepUsage]] = {}
    for r in parse_rows(text):
        if len(r) != 19:
            continue
        raw, _, step = r[0].partition(".")
        if not raw.isdigit():
            continue
        if step:
            steps.setdefault(raw, []).append(StepUsage(
                step=step, state=JobState.parse(r[6]), exit_code=r[7],
                total_cpu_s=parse_cpu_time(r[12]), max_rss_bytes=parse_size_bytes(r[16])))
            continue
        cpus, nodes = _int(r[13]), _int(r[14])
        gpus, gpu_type = parse_gpus(r[17])
        by = re.search(r"\bby (\d+)", r[6])
        jobs[raw] = dict(
            job_id=int(raw), job=r[1], name=r[2], user=r[3], account=r[4], partition=r[5],
            state=JobState.parse(r[6]), exit_code=r[7], reason="" if r[8] == "None" else r[8],
            start=_utc(r[9]), end=_utc(r[10]), elapsed_s=_int(r[11]),
            total_cpu_s=parse_cpu_time(r[12]), cpus=cpus, nodes_count=nodes,
            req_mem_bytes=parse_req_mem(r[15], cpus, nodes), gpus=gpus, gpu_type=gpu_type,
            nodes="" if r[18] == "None assigned" else r[18],
            cancelled_by_uid=int(by.group(1)) if by else None)
    return [JobUsage(**fields, steps=tuple(steps.get(raw, ()))) for raw, fields in jobs.items()]


def parse_live_usage(text: str) -> dict[int, LiveUsage]:
    """Rows of :func:`~workbench.slurm.queries.live_usage` (``sstat -a -nP --noconvert`` with
    ``JobID,TresUsageInTot,MaxRSS``: ``2.batch|cpu=00:00:05,...,mem=8159232,...|8159232``)
    to each job's :class:`LiveUsage`; jobs with no running step are not in the answer
    (sstat says so on stderr), other lines are skipped."""
    steps: dict[int, list[StepUsage]] = {}
    for r in parse_rows(text):
        if len(r) != 3:
            continue
        raw, dot, step = r[0].partition(".")
        if not raw.isdigit() or not dot:
            continue
        cpu = ""
        for item in r[1].split(","):
            key, _, value = item.partition("=")
            if key == "cpu":
                cpu = value
        try:
            usage = StepUsage(step=step, state=JobState.RUNNING, exit_code="",
                              total_cpu_s=parse_cpu_time(cpu),
                              max_rss_bytes=parse_size_bytes(r[2]))
        except ValueError:
            continue
        steps.setdefault(int(raw), []).append(usage)
    return {job: LiveUsage(job, tuple(s)) for job, s in steps.items()}
